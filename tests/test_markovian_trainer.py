"""MarkovianTrainer on the tiny offline demo model: rollout, scoring context, methods, resume."""

import json
import math
import os

import pytest
import torch

from implicit_reasoning.data.registry import load_markovian_examples
from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer
from implicit_reasoning.objectives.markovian import ANSWER, ANSWER_MARKER, COT as COT_SEGMENT, REDACTED
from implicit_reasoning.trainer import TRAINERS, MarkovianConfig, MarkovianTrainer, MarkovianVQTrainer, trainer_class
from implicit_reasoning.trainer.core.state import STATE_FILE
from implicit_reasoning.trainer.markovian import trainer as markovian_trainer

COT = 4
QUESTION = "77 + 88 + 99"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok():
    return build_demo_tokenizer()


@pytest.fixture(scope="module")
def data(tok):
    config = "num_terms=3,max_value=20,num_examples=8"
    train = load_markovian_examples("arithmetic", "train", tok, dataset_config=config)
    evaluation = load_markovian_examples("arithmetic", "eval", tok, dataset_config=config.replace("=8", "=3"))
    return train, evaluation


def make_trainer(tok, data, tmp_path, seed=0, **overrides):
    values = dict(
        output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, gradient_accumulation_steps=1,
        max_steps=2, cot_length=COT, learning_rate=1e-2, report_to=[], use_cpu=True, logging_steps=1,
        save_strategy="no", disable_tqdm=True, per_device_eval_batch_size=4, rollout_batch_size=8, seed=seed,
        max_prompt_length=96,
    )
    values.update(overrides)
    model = build_demo_model(tok, hidden_size=64, num_layers=2, intermediate_size=128, seed=seed)
    if values.get("use_lora"):  # an adapter records where its base weights load from
        model.save_pretrained(os.path.join(tmp_path, "base"))
        values["model_name_or_path"] = os.path.join(tmp_path, "base")
    config = MarkovianConfig(**values)
    return trainer_class("markovian", config)(model, config, train_dataset=data[0], eval_dataset=data[1],
                                              processing_class=tok)


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _prompts(data, n=2):
    return {key: data[0][key][:n] for key in ("question", "answer")}


# ------------------------------------------------------------------------ registry / config
def test_registered_and_required_columns():
    assert TRAINERS["markovian"] == (MarkovianTrainer, MarkovianConfig)
    assert MarkovianTrainer.required_columns == ("question", "answer")
    assert trainer_class("markovian", MarkovianConfig(output_dir="x", use_vq=True)) is MarkovianVQTrainer


def test_each_variant_rejects_the_other_config(tok, data, tmp_path):
    model = build_demo_model(tok, hidden_size=64, num_layers=2, intermediate_size=128)
    with pytest.raises(ValueError, match="use_vq=True: use MarkovianVQTrainer"):
        MarkovianTrainer(model, MarkovianConfig(output_dir=str(tmp_path), use_vq=True, report_to=[]),
                         processing_class=tok)
    with pytest.raises(ValueError, match="MarkovianVQTrainer needs use_vq=True"):
        MarkovianVQTrainer(model, MarkovianConfig(output_dir=str(tmp_path), report_to=[]), processing_class=tok)


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (dict(scorer="judge"), "scorer='judge'"),
        (dict(method="sft"), "method='sft'"),
        (dict(actor_reward_weight=0.5), "actor_reward_weight=0.5.*scorer='actor'"),
        (dict(rloo_k=0), "rloo_k=0"),
        (dict(baseline_decay=1.0), "baseline_decay=1.0"),
        (dict(cot_length=0), "cot_length=0"),
        (dict(ppo_epsilon=0.0), "ppo_epsilon=0.0"),
        (dict(kl_penalty=-1.0), "kl_penalty=-1.0"),
        (dict(use_vq=True, method="ppo"), "use_vq=True.*method='ppo'"),
        (dict(use_vq=True, markovian=False, kl_penalty=0.5), "use_vq=True.*markovian=False, kl_penalty=0.5.*no effect"),
        (dict(use_vq=True, cot_length=12), "use_vq=True.*cot_length=12"),
        (dict(use_vq=True, vq_hidden_layer=0), "vq_hidden_layer=0 is the placeholder embedding"),
        (  # the critic forward runs with the adapter disabled; checkpoint recomputation would not
            dict(use_vq=True, use_lora=True, gradient_checkpointing=True),
            "use_vq=True.*use_lora=True.*gradient_checkpointing=True",
        ),
        (dict(use_vq=True, use_lora=True, activation_checkpointing=True), "use_vq=True.*use_lora=True"),
        (dict(vq_gumbel_tau=0.0), "vq_gumbel_tau=0.0"),
        (dict(rloo_k=1, temperature=0.0), "temperature=0.0"),  # K=1 keeps the other rollout checks
        (dict(rloo_k=3), "multiple of rloo_k"),
    ],
)
def test_config_errors_name_the_field(tmp_path, overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        MarkovianConfig(output_dir=str(tmp_path), report_to=[], per_device_train_batch_size=4, **overrides)


@pytest.mark.parametrize(
    "overrides",
    [dict(use_vq=True, use_lora=True), dict(use_vq=True, gradient_checkpointing=True),
     dict(use_lora=True, gradient_checkpointing=True)],
)
def test_config_allows_each_pair_of_vq_lora_checkpointing(tmp_path, overrides):
    MarkovianConfig(output_dir=str(tmp_path), report_to=[], per_device_train_batch_size=4, **overrides)


def test_config_allows_k1_and_defaults(tmp_path):
    config = MarkovianConfig(output_dir=str(tmp_path), report_to=[], rloo_k=1, per_device_train_batch_size=3)
    assert config.prompts_per_update == 3
    assert (config.markovian, config.scorer, config.method, config.baseline_decay) == (True, "critic", "pg", 0.9)


# -------------------------------------------------------------------------- scoring context
def _scoring_row(trainer, question, answer, cot):
    return trainer.prompts.scoring_rows([trainer.scoring_prefix(question)], [cot], [answer])


def test_scoring_rows_redact_the_question_at_token_level(tok, data, tmp_path):
    trainer = make_trainer(tok, data, tmp_path)
    cot = tok(" so the sum is").input_ids  # shares no token with the question
    row = _scoring_row(trainer, QUESTION, "264", cot)
    ids = row["input_ids"][0][row["attention_mask"][0].bool()].tolist()
    instruction = trainer.args.instruction
    expected = tok(f"{instruction} {REDACTED}\nReasoning:").input_ids + cot + tok(ANSWER_MARKER).input_ids
    assert ids == expected + tok(" 264").input_ids  # the space sits before the answer
    question_ids = set(tok(QUESTION).input_ids) | set(tok(" " + QUESTION).input_ids)
    assert question_ids and not question_ids & set(ids)
    assert REDACTED in tok.decode(ids) and "77" not in tok.decode(ids)
    answer = row["input_ids"][0][row["segment_ids"][0] == ANSWER].tolist()
    assert answer == tok(" 264").input_ids


def test_non_markovian_ablation_keeps_the_question(tok, data, tmp_path):
    trainer = make_trainer(tok, data, tmp_path, markovian=False)
    row = _scoring_row(trainer, QUESTION, "264", tok(" 1 + 2 = 3.").input_ids)
    text = tok.decode(row["input_ids"][0][row["attention_mask"][0].bool()].tolist())
    assert text.startswith(f"{trainer.args.instruction} {QUESTION}\nReasoning:") and REDACTED not in text


def test_chat_template_wraps_actor_and_scoring_prompts_alike(tok, data, tmp_path):
    chat = build_demo_tokenizer()
    chat.chat_template = "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}>{% endif %}"
    values = dict(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, report_to=[], use_cpu=True)
    model = build_demo_model(tok, hidden_size=64, num_layers=2, intermediate_size=128)
    trainer = MarkovianTrainer(model, MarkovianConfig(**values), processing_class=chat)
    instruction = trainer.args.instruction
    assert trainer.prompts.text(QUESTION) == f"<s>{instruction} {QUESTION}</s>>Reasoning:"
    assert trainer.prompts.text(QUESTION, redact=True) == f"<s>{instruction} {REDACTED}</s>>Reasoning:"
    plain = MarkovianTrainer(model, MarkovianConfig(**values, use_chat_template=False), processing_class=chat)
    assert plain.prompts.text(QUESTION) == f"{instruction} {QUESTION}\nReasoning:"


def test_cots_have_exactly_cot_length_tokens_and_eos_is_not_suppressed(tok, data, tmp_path):
    """A CoT is exactly cot_length tokens sampled from pi itself: eos neither stops it nor is masked out
    (masking it would sample from a renormalised pi while the gradient uses log pi)."""
    trainer = make_trainer(tok, data, tmp_path)

    def push_eos(module, inputs, output):
        output = output.clone()
        output[..., tok.eos_token_id] += 100.0
        return output

    handle = trainer.model.lm_head.register_forward_hook(push_eos)
    cots = trainer.sample([tok("Add 1 + 2\nReasoning:").input_ids], 3, COT).tolist()
    handle.remove()
    assert [len(c) for c in cots] == [COT] * 3
    assert all(c == [tok.eos_token_id] * COT for c in cots)


def test_rollout_layout_and_baseline_once_per_question(tok, data, tmp_path):
    trainer = make_trainer(tok, data, tmp_path, rloo_k=2)
    calls = []
    original = trainer._generate_cots
    trainer._generate_cots = lambda model, prompts, greedy: calls.append((len(prompts), greedy)) or original(
        model, prompts, greedy
    )
    batch = trainer.make_rollout(_prompts(data))
    assert calls == [(2, True)]  # one greedy critic CoT per question (the K actor samples come from sample())
    assert (batch["segment_ids"] == COT_SEGMENT).sum(dim=1).tolist() == [COT] * 4
    assert batch["advantages"].shape == (4,) and torch.isfinite(batch["advantages"]).all()
    # group z-score: each question's two advantages are -1/+1 (or 0/0 on a tie)
    assert torch.allclose(batch["advantages"].view(2, 2).sum(dim=1), torch.zeros(2), atol=1e-5)
    calls.clear()
    trainer.make_rollout(_prompts(data))
    assert calls == []  # the frozen critic's CoT' and its score are cached


# ------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize(
    "overrides",
    [
        dict(method="pg"),
        dict(method="ppo", ppo_epochs=2),
        dict(method="ei", ei_warmup=0, ei_std=-1.0),
        dict(method="pg", rloo_k=1, markovian=False, scorer="actor", actor_reward_weight=0.5, entropy_bonus=0.01),
        dict(method="pg", use_lora=True, lora_r=4),  # critic = the adapter-disabled policy
    ],
    ids=["pg", "ppo", "ei", "pg-k1-ablation-actor", "pg-lora"],
)
def test_end_to_end_training_changes_parameters(tok, data, tmp_path, overrides):
    trainer = make_trainer(tok, data, tmp_path, **overrides)
    before = _params(trainer.model)
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    assert trainer.state.global_step == 2 and trainer.update_guard.skipped_updates == 0
    after = _params(trainer.model)
    assert any(not torch.equal(before[n], after[n]) for n in before)
    metrics = trainer.evaluate()
    records = trainer.evaluation_records(trainer.model, trainer.eval_dataset)  # greedy: the same records again
    assert [r["index"] for r in records] == [0, 1, 2] and metrics["eval_num_questions"] == 3
    assert metrics["eval_accuracy"] == pytest.approx(sum(r["correct"] for r in records) / 3)
    assert metrics["eval_answer_logprob"] == pytest.approx(sum(r["answer_logprob"] for r in records) / 3, abs=1e-5)
    samples = [json.loads(line) for line in open(os.path.join(tmp_path, "samples.jsonl"))]
    assert {"prompt", "rationale", "answer", "reward", "advantage"} <= set(samples[0])


def test_kl_is_zero_before_the_first_update_and_uses_the_critic(tok, data, tmp_path):
    trainer = make_trainer(tok, data, tmp_path, kl_penalty=1.0)
    batch = {**trainer.make_rollout(_prompts(data)), "rollout_pass": 0}
    assert trainer.compute_objective(trainer.model, batch)["kl"].item() == 0.0  # actor == critic
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert trainer.compute_objective(trainer.model, batch)["kl"].item() > 0.0


def test_entropy_is_logged_without_a_graph_unless_it_is_a_bonus(tok, data, tmp_path, monkeypatch):
    trainer = make_trainer(tok, data, tmp_path, kl_penalty=0.0)
    batch = {**trainer.make_rollout(_prompts(data)), "rollout_pass": 0}
    calls = []
    original = markovian_trainer.masked_entropy

    def recording(logits, mask):
        calls.append((logits.shape[0], logits.requires_grad))
        return original(logits, mask)

    monkeypatch.setattr(markovian_trainer, "masked_entropy", recording)
    logged = trainer.compute_objective(trainer.model, batch)
    # entropy_bonus = kl_penalty = 0: a no-grad by-product of the chunked LM head, no logits at all
    assert calls == []
    with torch.no_grad():
        segments = batch["segment_ids"]
        logits, window = markovian_trainer.forward_window(trainer.model, batch, segments == COT_SEGMENT)
    cot_mask = window["segment_ids"] == COT_SEGMENT
    assert logged["entropy"].item() == pytest.approx(original(logits, cot_mask).mean().item(), rel=1e-5)
    assert logged["entropy"].item() > 0

    calls.clear()
    trainer.args.entropy_bonus = 0.5
    bonus = trainer.compute_objective(trainer.model, batch)
    assert calls == []  # a bonus: differentiable, from the chunked head (no logits) ...
    assert bonus["entropy"].requires_grad is False and bonus["loss"].requires_grad
    monkeypatch.setattr(markovian_trainer, "window_head_terms", lambda *args, **kwargs: None)
    fallback = trainer.compute_objective(trainer.model, batch)
    assert calls == [(4, True)]  # ... or, where that is not exact, one differentiable call over the logits
    assert fallback["loss"].item() == pytest.approx(bonus["loss"].item(), rel=1e-5)
    assert bonus["entropy"].item() == pytest.approx(logged["entropy"].item(), rel=1e-5)
    assert bonus["loss"].item() == pytest.approx(logged["loss"].item() - 0.5 * logged["entropy"].item(), rel=1e-5)


class RatioRecorder(MarkovianTrainer):
    def compute_objective(self, model, batch):
        parts = super().compute_objective(model, batch)
        self.ratios.append((batch["rollout_pass"], parts["ratio"].item()))
        return parts


def test_ppo_ratio_is_exactly_one_on_the_first_pass_then_moves(tok, data, tmp_path):
    values = dict(method="ppo", ppo_epochs=2, gradient_accumulation_steps=2, per_device_train_batch_size=2,
                  max_steps=2, output_dir=str(tmp_path), rloo_k=2, cot_length=COT, learning_rate=5e-2,
                  report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True)
    model = build_demo_model(tok, hidden_size=64, num_layers=2, intermediate_size=128)
    trainer = RatioRecorder(model, MarkovianConfig(**values), train_dataset=data[0], processing_class=tok)
    trainer.ratios = []
    rollouts = []
    original = trainer.make_rollout
    trainer.make_rollout = lambda prompts: rollouts.append(1) or original(prompts)
    trainer.train()
    assert len(rollouts) == 1  # 2 optimizer updates (ppo_epochs) from one rollout
    assert [p for p, _ in trainer.ratios] == [0, 0, 1, 1]
    assert all(r == 1.0 for p, r in trainer.ratios if p == 0)
    assert all(r != 1.0 for p, r in trainer.ratios if p == 1)


def test_evaluation_samples_cots_for_maj_at_k_and_votes_on_the_critics_answers(tok, data, tmp_path):
    trainer = make_trainer(tok, data, tmp_path, eval_num_samples=3, temperature=1.5)
    metrics = trainer.evaluate()
    records = trainer.evaluation_records(trainer.model, trainer.eval_dataset)
    assert "eval_maj@3" in metrics and all(len(r["samples"]) == 3 for r in records)
    for r in records:
        assert all(s.startswith("Answer:") for s in r["samples"])
        assert r["sample_predictions"] == [markovian_trainer.extract_answer("arithmetic", s) for s in r["samples"]]
    greedy = make_trainer(tok, data, tmp_path).evaluation_records(trainer.model, trainer.eval_dataset)
    assert [r["rationale"] for r in greedy] == [r["rationale"] for r in records]  # the first CoT stays greedy


def test_use_vq_turns_on_the_search_for_unused_parameters_under_ddp():
    assert MarkovianConfig(output_dir="x", use_vq=True).ddp_find_unused_parameters is True
    assert MarkovianConfig(output_dir="x").ddp_find_unused_parameters is None
    assert MarkovianConfig(output_dir="x", use_vq=True, ddp_find_unused_parameters=False).ddp_find_unused_parameters \
        is False


# ------------------------------------------------------------------------ actor reward weight
def _grads(trainer, batch, weight):
    trainer.args.actor_reward_weight = weight
    trainer.model.zero_grad()
    trainer.compute_objective(trainer.model, batch)["loss"].backward()
    return torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])


@pytest.mark.parametrize("markovian, actor_forwards", [(True, 2), (False, 1)])
def test_actor_reward_weight_changes_the_gradient(tok, data, tmp_path, markovian, actor_forwards):
    trainer = make_trainer(tok, data, tmp_path, scorer="actor", actor_reward_weight=0.5, markovian=markovian,
                           kl_penalty=0.0)
    scored = []
    answer_logprob = trainer._answer_logprob
    trainer._answer_logprob = lambda model, rows: scored.append(answer_logprob(model, rows)) or scored[-1]
    batch = {**trainer.make_rollout(_prompts(data)), "rollout_pass": 0}
    calls = []
    handle = trainer.model.register_forward_hook(lambda *args: calls.append(1))
    with_reward = _grads(trainer, batch, 0.5)
    handle.remove()
    assert len(calls) == actor_forwards  # non-Markovian: log pi(CoT) and R from ONE forward
    without = _grads(trainer, batch, 0.0)
    without_rows = _grads(trainer, {k: v for k, v in batch.items() if not k.startswith("score_")}, 0.0)
    assert not torch.allclose(with_reward, without)
    assert torch.equal(without, without_rows)  # w = 0: the reward term is not even computed
    # and the differentiable R is the same quantity the rollout scored
    trainer.args.actor_reward_weight = 0.5
    parts = trainer.compute_objective(trainer.model, batch)
    scores = scored[-1]  # the rollout's log P_actor(y | x~, CoT), after the critic baseline's own scoring
    assert parts["actor_reward"].item() == pytest.approx(scores.mean().item(), abs=1e-4)


# ------------------------------------------------------------------------ eval sharding
@pytest.mark.parametrize("use_vq", [False, True], ids=["sampled", "vq"])
@pytest.mark.parametrize("limit", [1, 3])
def test_eval_shards_make_the_same_model_calls_on_every_rank(tok, data, tmp_path, monkeypatch, use_vq, limit):
    """ZeRO-3: every rank must make the same generate / forward calls, even with an empty shard (limit 1)."""
    vq = dict(use_vq=True, vq_reason_length=COT, rloo_k=1, cot_length=50) if use_vq else {}  # VQ: default cot_length
    trainer = make_trainer(tok, data, tmp_path, per_device_eval_batch_size=1, rollout_batch_size=1,
                           max_eval_samples=limit, **vq)
    accelerator = type(trainer.accelerator)
    rank = {"index": 0}
    monkeypatch.setattr(accelerator, "num_processes", property(lambda self: 2))
    monkeypatch.setattr(accelerator, "process_index", property(lambda self: rank["index"]))
    calls = []

    def counted(name, function, rows):
        def wrapper(*args, **kwargs):
            calls.append((name, rows(*args)))
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(markovian_trainer, "generate",
                        counted("generate", markovian_trainer.generate, lambda model, prompts, *a: len(prompts)))
    monkeypatch.setattr(markovian_trainer, "score_rows",
                        counted("score", markovian_trainer.score_rows, lambda model, rows, *a, **k: len(rows["input_ids"])))
    if use_vq:
        monkeypatch.setattr(trainer, "_hidden", counted("vq_hidden", trainer._hidden,
                                                        lambda model, rows: len(rows["input_ids"])))

    def run(index):
        rank["index"] = index
        calls.clear()
        records = trainer.evaluation_records(trainer.model, trainer.eval_dataset)
        return records, list(calls)

    records_0, calls_0 = run(0)
    records_1, calls_1 = run(1)
    per_rank = -(-limit // 2)  # ceil: rank 1 pads its shard (limit 1: an empty shard, padded to one row)
    # CoTs (VQ: one hidden-state forward per chunk), greedy answers, then log P(answer) (one forward per row
    # here: score_rows chunks by rollout_batch_size = 1); generate() chunks by the eval batch size (1)
    cot = [("vq_hidden", 1)] * per_rank if use_vq else [("generate", per_rank)]
    expected = cot + [("generate", per_rank)] + [("score", per_rank)]
    assert calls_0 == calls_1 == expected
    assert [r["index"] for r in records_0] == list(range(0, limit, 2))
    assert [r["index"] for r in records_1] == list(range(1, limit, 2))  # padding rows are dropped


# --------------------------------------------------------------------------------- resume
def test_checkpoint_resume_restores_ema_baseline_and_ei_history(tok, data, tmp_path):
    common = dict(method="ei", rloo_k=1, ei_warmup=0, ei_std=0.0, save_strategy="steps", save_steps=1)
    first = make_trainer(tok, data, tmp_path, **common)
    first.train()
    state = first._checkpointed.state_dict()
    assert state["ema_baseline"]["value"] is not None and state["ei_history"]["batches"] == 2
    with open(os.path.join(tmp_path, "checkpoint-2", STATE_FILE)) as f:
        assert json.load(f) == state
    with open(os.path.join(tmp_path, "checkpoint-1", STATE_FILE)) as f:
        state_1 = json.load(f)
    assert state_1["ei_history"]["batches"] == 1

    resumed = make_trainer(tok, data, tmp_path, seed=1, **common)
    resumed.train(resume_from_checkpoint=os.path.join(tmp_path, "checkpoint-2"))
    assert resumed.ema_baseline.value == state["ema_baseline"]["value"]
    assert resumed.reward_history.state_dict() == state["ei_history"]

    continued = make_trainer(tok, data, tmp_path, seed=1, **common)
    continued.train(resume_from_checkpoint=os.path.join(tmp_path, "checkpoint-1"))
    assert continued.state.global_step == 2
    assert continued.reward_history.batches == 2  # one restored batch + one new


# ----------------------------------------------------------------------------- wiki tasks
def test_wiki_continuation_trains_and_evaluates(tok, tmp_path):
    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "wikitext")
    train = load_markovian_examples("wiki_continuation", "train", tok, 12, 6, dataset_path=fixture)
    evaluation = load_markovian_examples("wiki_continuation", "eval", tok, 12, 6, dataset_path=fixture)
    trainer = make_trainer(tok, (train, evaluation.select(range(2))), tmp_path, dataset_name="wiki_continuation",
                           max_steps=1, max_prompt_length=128)
    trainer.train()
    records = trainer.evaluation_records(trainer.model, trainer.eval_dataset)
    assert [r["index"] for r in records] == [0, 1]
    assert all(isinstance(r["correct"], bool) and r["answer_logprob"] < 0 for r in records)
