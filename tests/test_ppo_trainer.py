"""PPOCurriculumTrainer: rollout numbers against plain torch, the update schedule, early stop, rewards, save/resume,
LoRA on policy and value, evaluation outputs, TensorBoard, and two processes."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import RANK_RESULT, rank_results, torchrun_command
from implicit_reasoning.demo import build_demo_model
from implicit_reasoning.objectives.advantages import gae
from implicit_reasoning.trainer import PPOCurriculumConfig, PPOCurriculumTrainer
from implicit_reasoning.trainer.ppo_curriculum.value_model import VALUE_DIR, PolicyAndValue

ROOT = Path(__file__).resolve().parents[1]
DATA = "num_terms=2,max_value=5,num_examples=32"


def _config(tmp_path, **overrides):
    base = dict(output_dir=str(tmp_path / "out"), max_steps=2, logging_steps=1, report_to=[], use_cpu=True,
                save_strategy="no", disable_tqdm=True, per_device_train_batch_size=4, learning_rate=1e-3,
                dataset_name="arithmetic", dataset_config=DATA, response_length=6, max_eval_samples=4,
                ppo_epochs=1, reward_funcs=["answer_accuracy", "repetition_penalty"])
    return PPOCurriculumConfig(**{**base, **overrides})


def _trainer(config, tokenizer, model=None, **kwargs):
    model = model if model is not None else build_demo_model(tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    train = PPOCurriculumTrainer.load_split(config, "train", tokenizer)
    evaluation = PPOCurriculumTrainer.load_split(config, "eval", tokenizer)
    return PPOCurriculumTrainer(model, config, train_dataset=train, eval_dataset=evaluation,
                                processing_class=tokenizer, **kwargs)


def _logps(model, ids, mask, start):
    """Plain float64 log p(token) of columns start.. of right-padded rows (one full forward, no windowing)."""
    logits = model(input_ids=ids, attention_mask=mask).logits.double()
    return torch.log_softmax(logits[:, start - 1 : -1], -1).gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("score_from_generation", [True, False])
def test_rollout_matches_a_plain_torch_recomputation(tmp_path, demo_tokenizer, score_from_generation):
    config = _config(tmp_path, kl_coef=0.3, whiten_advantages=False, gamma=0.9, lam=0.8,
                     score_from_generation=score_from_generation)
    trainer = _trainer(config, demo_tokenizer)
    trainer.ref_model.model.layers[0].mlp.down_proj.weight.data.mul_(1.5)  # a reference that differs from the policy
    prompts = trainer.train_dataset.select(range(4)).to_dict()
    out = trainer.make_rollout(prompts)
    segments, ids, mask = out["segment_ids"], out["input_ids"], out["attention_mask"]
    start = int((segments == 2).any(0).nonzero()[0])
    tokens = out["mask"].bool()
    assert torch.equal(tokens, segments[:, start:] == 2)
    policy = trainer.unwrapped_policy()
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = policy(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits.double()
        ref_logits = trainer.ref_model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits.double()
        hidden = trainer.model.value.backbone(input_ids=ids, attention_mask=mask, position_ids=position_ids)
        values = trainer.model.value.head(hidden.last_hidden_state.float()).squeeze(-1).double()[:, start - 1 : -1]

    def gather(lg):
        return torch.log_softmax(lg[:, start - 1 : -1], -1).gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1)

    logp, ref_logp = gather(logits) * tokens, gather(ref_logits) * tokens
    torch.testing.assert_close(out["old_logps"].double(), logp, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["old_values"].double() * tokens, values * tokens, atol=1e-4, rtol=1e-4)
    # reward: -beta * kl per token + the weighted score at the last token; then GAE
    completions = [demo_tokenizer.decode(ids[i, start:][tokens[i]].tolist(), skip_special_tokens=True) for i in range(4)]
    from implicit_reasoning.evaluation.checkers import is_correct
    from implicit_reasoning.objectives.rewards import repetition_rate

    scores = []
    for i, text in enumerate(completions):
        y = ids[i, start:][tokens[i]].tolist()
        cut_off = demo_tokenizer.eos_token_id not in y  # read only from an answer statement, as in evaluation
        scores.append(float(is_correct("arithmetic", text, prompts["groundtruth"][i], cut_off)) - repetition_rate(y))
    rewards = -0.3 * (logp - ref_logp)
    for i in range(4):
        rewards[i, int(tokens[i].sum()) - 1] += scores[i]
    adv, ret = gae(rewards, values * tokens, tokens, 0.9, 0.8)
    torch.testing.assert_close(out["advantages"].double(), adv.double(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["returns"].double(), ret.double(), atol=1e-4, rtol=1e-4)


def test_first_update_has_ratio_one_and_losses_recompute(tmp_path, demo_tokenizer):
    config = _config(tmp_path, max_steps=1, vf_coef=0.5)
    trainer = _trainer(config, demo_tokenizer)
    trainer.train()
    logged = trainer.state.log_history[0]
    assert logged["val/ratio"] == pytest.approx(1.0, abs=1e-6)  # dropout is off: the update's log-probs are the rollout's
    assert logged["policy/approxkl"] == pytest.approx(0.0, abs=1e-10)
    assert logged["loss"] == pytest.approx(logged["loss/policy"] + 0.5 * logged["loss/value"], rel=1e-4)


def _params(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def test_gradient_accumulation_gives_the_same_update(tmp_path, demo_tokenizer):
    """Each micro-batch divides by its minibatch's token count: G=2 x 2 rows == G=1 x 4 rows."""
    results = []
    for batch, accumulation in ((4, 1), (2, 2)):
        torch.manual_seed(0)
        config = _config(tmp_path / f"g{accumulation}", max_steps=1, per_device_train_batch_size=batch,
                         gradient_accumulation_steps=accumulation, max_grad_norm=1e9)
        trainer = _trainer(config, demo_tokenizer)
        before = _params(trainer.model)
        trainer.train()
        results.append((before, _params(trainer.model)))
    (b1, a1), (b2, a2) = results
    changed = [n for n in a1 if not torch.equal(a1[n], b1[n])]
    assert changed and any(n.startswith("value.") for n in changed) and any(n.startswith("policy.") for n in changed)
    for name in a1:
        torch.testing.assert_close(a1[name], a2[name], atol=2e-6, rtol=1e-4)


def _count_rollouts(trainer):
    calls = []
    original = trainer.make_rollout

    def counted(prompts):
        calls.append(trainer.state.global_step)
        return original(prompts)

    trainer.make_rollout = counted
    return calls


# the approx KL of an update is measured before its step (the first update of a rollout: 0); as in TRL's PPO,
# an update whose KL exceeds 1.5 x early_stop_kl is applied and then the rollout's remaining updates are dropped
@pytest.mark.parametrize("early_stop_kl,expected", [(None, [0]), (1e-12, [0, 2])])
def test_a_rollout_serves_epochs_times_minibatches_updates_unless_kl_stops_it(tmp_path, demo_tokenizer,
                                                                              early_stop_kl, expected):
    config = _config(tmp_path, max_steps=4, ppo_epochs=2, num_mini_batches=2, early_stop_kl=early_stop_kl,
                     learning_rate=1e-2)
    trainer = _trainer(config, demo_tokenizer)
    calls = _count_rollouts(trainer)
    trainer.train()
    assert calls == expected
    if early_stop_kl is not None:
        stopped = [row["policy/early_stopped"] for row in trainer.state.log_history if "policy/early_stopped" in row]
        assert stopped == [0.0, 1.0, 0.0]  # update 1: KL 0, go on; update 2: stop; update 3 (new rollout): go on


def test_adaptive_kl_coefficient_follows_the_measured_kl(tmp_path, demo_tokenizer):
    config = _config(tmp_path, max_steps=3, adaptive_kl=True, kl_target=0.05, kl_horizon=10, learning_rate=1e-2)
    trainer = _trainer(config, demo_tokenizer)
    trainer.train()
    coefs = [row["objective/kl_coef"] for row in trainer.state.log_history if "objective/kl_coef" in row]
    kls = [row["objective/kl"] for row in trainer.state.log_history if "objective/kl" in row]
    assert abs(kls[0]) < 1e-5 and abs(kls[1]) > 1e-3  # the first rollout is the reference's (up to rounding); later ones drift
    for i in range(2):  # beta_{i+1} = beta_i (1 + clip(KL_i / target - 1, +-0.2) n / horizon), n = 4 samples
        error = min(max(kls[i] / 0.05 - 1, -0.2), 0.2)
        assert coefs[i + 1] == pytest.approx(coefs[i] * (1 + error * 4 / 10), rel=1e-5)
    assert coefs[1] < coefs[0]  # KL 0 < target: down


def test_user_reward_functions_get_trl_style_arguments_and_a_nan_names_the_function(tmp_path, demo_tokenizer):
    seen = {}

    def length_bonus(prompts, completions, completion_ids, groundtruth, source, **kwargs):
        seen.update(prompts=prompts, completions=completions, ids=completion_ids, gold=groundtruth, source=source)
        return [float(len(ids)) for ids in completion_ids]

    def broken(prompts, completions, **kwargs):
        return [float("nan")] * len(completions)

    config = _config(tmp_path, max_steps=1, max_nonfinite_updates=1, reward_weights=[0.5, 1.0])
    trainer = _trainer(config, demo_tokenizer, reward_funcs=[length_bonus, broken])
    with pytest.raises(RuntimeError, match="broken"):
        trainer.train()
    assert seen["source"][0] == "arithmetic" and seen["gold"][0].lstrip("-").isdigit()
    assert len(seen["ids"]) == 4 and all(isinstance(i, int) for i in seen["ids"][0])


def test_save_and_resume_restore_policy_value_and_kl_controller(tmp_path, demo_tokenizer):
    config = _config(tmp_path, max_steps=2, save_strategy="steps", save_steps=2, adaptive_kl=True)
    trainer = _trainer(config, demo_tokenizer)
    trainer.train()
    checkpoint = Path(config.output_dir) / "checkpoint-2"
    assert (checkpoint / "model.safetensors").exists() and (checkpoint / VALUE_DIR / "value_head.safetensors").exists()
    state = json.loads((checkpoint / "implicit_reasoning_state.json").read_text())
    assert state["kl_controller"]["value"] == trainer.kl_ctl.value != 0.05
    trained = _params(trainer.model)

    resumed = _trainer(_config(tmp_path, max_steps=2, adaptive_kl=True), demo_tokenizer)
    resumed._load_from_checkpoint(str(checkpoint))
    for name, value in _params(resumed.model).items():
        assert torch.equal(value, trained[name]), name
    resumed._checkpointed.load(str(checkpoint))
    assert resumed.kl_ctl.value == trainer.kl_ctl.value
    # a checkpoint whose value network is missing weights is an error, never a silent partial load
    from safetensors.torch import load_file, save_file

    head = load_file(checkpoint / VALUE_DIR / "model.safetensors")
    save_file({k: v for k, v in list(head.items())[1:]}, checkpoint / VALUE_DIR / "model.safetensors")
    with pytest.raises(ValueError, match="missing"):
        resumed._load_from_checkpoint(str(checkpoint))


def test_resume_continues_training_from_the_checkpoint(tmp_path, demo_tokenizer):
    config = _config(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    full = _trainer(config, demo_tokenizer)
    full.train()
    config2 = _config(tmp_path, max_steps=4, output_dir=str(tmp_path / "out"))
    resumed = _trainer(config2, demo_tokenizer)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    assert resumed.state.global_step == 4
    for name, value in _params(resumed.model).items():  # the same rollouts and updates after the resume
        torch.testing.assert_close(value, _params(full.model)[name], atol=1e-5, rtol=1e-4, msg=name)


def test_lora_trains_adapters_and_heads_only(tmp_path, demo_tokenizer):
    base = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    base.save_pretrained(tmp_path / "base")
    config = _config(tmp_path, max_steps=2, use_lora=True, lora_r=4, model_name_or_path=str(tmp_path / "base"),
                     learning_rate=1e-2)
    trainer = _trainer(config, demo_tokenizer, model=base)
    before = _params(trainer.model)
    frozen = {n for n, p in trainer.model.named_parameters() if not p.requires_grad}
    trainer.train()
    after = _params(trainer.model)
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    moved = {n for n in after if not torch.equal(before[n], after[n])}
    assert any("policy." in n and "lora_" in n for n in moved) and any("value.backbone" in n and "lora_" in n for n in moved)
    assert "value.head.weight" in moved and not any("lora_" not in n and "head" not in n for n in moved)
    trainer.save_model(str(tmp_path / "saved"))
    assert (tmp_path / "saved" / "adapter_model.safetensors").exists()
    assert (tmp_path / "saved" / VALUE_DIR / "adapter_model.safetensors").exists()


def test_evaluation_reports_validation_loss_accuracy_and_writes_test_generations(tmp_path, demo_tokenizer):
    config = _config(tmp_path, max_steps=2, test_prompts=["1 + 2 =", "3 + 4 ="], eval_strategy="steps", eval_steps=1,
                     save_strategy="steps", save_steps=1, per_device_eval_batch_size=4)
    trainer = _trainer(config, demo_tokenizer)
    trainer.train()
    evals = [row for row in trainer.state.log_history if "eval_loss" in row]
    assert len(evals) == 2 and all(0 <= row["eval_accuracy"] <= 1 and row["eval_loss"] > 0 for row in evals)
    best = min(evals, key=lambda row: row["eval_loss"])
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best['step']}")
    lines = [json.loads(x) for x in (Path(config.output_dir) / "test_generations.jsonl").read_text().splitlines()]
    assert [(r["step"], r["prompt"]) for r in lines] == [(1, "1 + 2 ="), (1, "3 + 4 ="), (2, "1 + 2 ="), (2, "3 + 4 =")]
    # the validation loss is the mean per-token loss of the eval rows' continuations under the policy
    from implicit_reasoning.trainer.core.curriculum import row_losses

    rows = trainer.eval_dataset.select(range(4))
    losses = row_losses(trainer.unwrapped_policy(), demo_tokenizer, rows["prompt"], rows["continuation"], 512, 4)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(float(losses.mean()), rel=1e-5)


def test_tensorboard_events_hold_the_curriculum_weights(tmp_path, demo_tokenizer):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    datasets = [{"name": "arithmetic", "config": DATA}, {"name": "arithmetic", "config": "num_terms=3,max_value=9,num_examples=32"}]
    config = _config(tmp_path, max_steps=2, report_to=["tensorboard"],
                     datasets=datasets, difficulty_interval=1, freeze_interval=1, difficulty_sample_size=4)
    trainer = _trainer(config, demo_tokenizer)
    trainer.train()
    files = [os.path.join(d, f) for d, _, fs in os.walk(config.output_dir) for f in fs if "tfevents" in f]
    assert files
    tags = set()
    for path in files:
        accumulator = EventAccumulator(path)
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert {f"train/curriculum/weight/arithmetic:{d['config']}" for d in datasets} <= tags


def test_the_trained_module_is_policy_and_value_and_the_policy_generates(tmp_path, demo_tokenizer):
    trainer = _trainer(_config(tmp_path), demo_tokenizer)
    assert isinstance(trainer.model, PolicyAndValue)
    with trainer.generation_model() as model:
        assert model is trainer.model.policy


TWO_PROCESSES = RANK_RESULT + """
import sys, torch
from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer
from implicit_reasoning.trainer import PPOCurriculumConfig, PPOCurriculumTrainer

tok = build_demo_tokenizer()
model = build_demo_model(tok, hidden_size=32, intermediate_size=64, num_heads=2)
mixture = [{"name": "arithmetic", "config": "num_terms=2,max_value=5,num_examples=32"},
           {"name": "arithmetic", "config": "num_terms=3,max_value=9,num_examples=32"}]
args = PPOCurriculumConfig(output_dir=sys.argv[1], max_steps=3, per_device_train_batch_size=2,
    gradient_accumulation_steps=2, num_mini_batches=2, ppo_epochs=2, response_length=6, adaptive_kl=True,
    kl_target=0.01, kl_horizon=10, learning_rate=1e-2, datasets=mixture, curriculum_rule="exp3",
    difficulty_interval=1, freeze_interval=1, difficulty_sample_size=6, reward_funcs=["answer_accuracy",
    "repetition_penalty"], use_cpu=True, ddp_backend="gloo", report_to=[], save_strategy="no", disable_tqdm=True)
train = PPOCurriculumTrainer.load_split(args, "train", tok)
trainer = PPOCurriculumTrainer(model, args, train_dataset=train, processing_class=tok)
trainer.train()
rank = trainer.accelerator.process_index
total = sum(float(p.double().sum()) for p in trainer.model.parameters())
weights = trainer.curriculum.weights.weights.tolist()
write_rank_result(sys.argv[2], rank, {"step": trainer.state.global_step, "kl_coef": trainer.kl_ctl.value,
                                      "weights": weights, "params": total})
from implicit_reasoning.pipeline import end_distributed
end_distributed()
"""


def test_two_processes_agree_on_weights_kl_coefficient_and_curriculum(tmp_path):
    script = tmp_path / "ppo_ddp.py"
    script.write_text(TWO_PROCESSES)
    command = torchrun_command(script, tmp_path / "out", tmp_path / "ranks")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    first, second = rank_results(tmp_path / "ranks")
    assert first == second and first["step"] == 3  # identical parameters, beta and curriculum weights on both ranks


def test_a_saved_ppo_model_evaluates_with_the_evaluation_script(tmp_path, demo_tokenizer):
    from implicit_reasoning.evaluate import EvaluationArguments, run_evaluation

    config = _config(tmp_path, max_steps=1)
    trainer = _trainer(config, demo_tokenizer)
    trainer.train()
    trainer.save_model(str(tmp_path / "model"))
    summary = run_evaluation(EvaluationArguments(model_name_or_path=str(tmp_path / "model"), split="test",
                                                 max_eval_samples=6, output_dir=str(tmp_path / "eval"),
                                                 eval_num_samples=8))
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert summary["trainer"] == "ppo_curriculum" and summary["num_questions"] == 6 == len(rows)
    assert summary["accuracy"] == sum(r["correct"] for r in rows) / 6 and "repetition_rate" in summary
    assert summary["maj@8"] == sum(r["majority_correct"] for r in rows) / 6 and len(rows[0]["samples"]) == 8


def test_gradient_checkpointing_gives_the_same_update(tmp_path, demo_tokenizer):
    losses = []
    for checkpointing in (False, True):
        config = _config(tmp_path / str(checkpointing), max_steps=1, gradient_checkpointing=checkpointing)
        trainer = _trainer(config, demo_tokenizer)
        trainer.train()
        losses.append(trainer.state.log_history[0]["loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_bf16_autocast_leaves_values_and_log_probs_float32(tmp_path, demo_tokenizer):
    trainer = _trainer(_config(tmp_path, bf16=True), demo_tokenizer)
    with trainer.accelerator.autocast():
        out = trainer.make_rollout(trainer.train_dataset.select(range(4)).to_dict())
    values = out["old_values"][out["mask"].bool()]
    assert values.dtype == torch.float32 and out["old_logps"].dtype == torch.float32
    assert (values.bfloat16().float() != values).any()  # not rounded to bf16 by autocast


def test_log_probs_are_those_of_the_sampling_temperature(tmp_path, demo_tokenizer):
    trainer = _trainer(_config(tmp_path, temperature=0.5), demo_tokenizer)
    out = trainer.make_rollout(trainer.train_dataset.select(range(2)).to_dict())
    ids, mask, tokens = out["input_ids"], out["attention_mask"], out["mask"].bool()
    start = int((out["segment_ids"] == 2).any(0).nonzero()[0])
    with torch.no_grad():
        logits = trainer.unwrapped_policy()(input_ids=ids, attention_mask=mask,
                                            position_ids=(mask.cumsum(1) - 1).clamp(min=0)).logits.double()
    expected = torch.log_softmax(logits[:, start - 1 : -1] / 0.5, -1).gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out["old_logps"].double(), expected * tokens, atol=1e-4, rtol=1e-4)


def test_attention_dropout_is_off_so_the_first_ratio_is_exactly_one(tmp_path, demo_tokenizer):
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    model.config.attention_dropout = 0.3
    for module in model.modules():
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.3
    trainer = _trainer(_config(tmp_path, max_steps=1), demo_tokenizer, model=model)
    trainer.train()
    assert trainer.state.log_history[0]["val/ratio"] == pytest.approx(1.0, abs=1e-7)


def test_seed_sets_the_value_head_and_a_fresh_rollout_after_an_early_stop_has_new_prompts(tmp_path, demo_tokenizer):
    heads = [_trainer(_config(tmp_path, seed=s), demo_tokenizer).model.value.head.weight for s in (1, 1, 2)]
    assert torch.equal(heads[0], heads[1]) and not torch.equal(heads[0], heads[2])
    config = _config(tmp_path, max_steps=4, ppo_epochs=4, early_stop_kl=1e-12, learning_rate=1e-2)
    trainer = _trainer(config, demo_tokenizer)
    prompts = []
    original = trainer.make_rollout
    trainer.make_rollout = lambda rows: (prompts.append(rows["prompt"]), original(rows))[1]
    trainer.train()
    assert len(prompts) == 2 and prompts[0] != prompts[1]


def test_evaluate_on_another_dataset_reports_its_own_loss_and_config_errors(tmp_path, demo_tokenizer):
    trainer = _trainer(_config(tmp_path), demo_tokenizer)
    first = trainer.evaluate()["eval_loss"]
    other = trainer.eval_dataset.select(range(4, 8))
    assert trainer.evaluate(other)["eval_loss"] != first
    with pytest.raises(ValueError, match="kl_coef=0.0 with adaptive_kl=True"):
        _config(tmp_path, adaptive_kl=True, kl_coef=0.0)


def test_a_dataset_with_only_the_required_columns_trains_and_evaluates(tmp_path, demo_tokenizer):
    """`source` is optional: without it the rows take `dataset_name`'s checker (issue 18: KeyError at the first
    rollout and in evaluate(), and answer_accuracy None for every row)."""
    config = _config(tmp_path, max_steps=1, reward_funcs=["answer_accuracy"])
    train, evaluation = (PPOCurriculumTrainer.load_split(config, split, demo_tokenizer).select_columns(
        ["prompt", "continuation", "groundtruth"]) for split in ("train", "eval"))
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    trainer = PPOCurriculumTrainer(model, config, train_dataset=train, eval_dataset=evaluation,
                                   processing_class=demo_tokenizer)
    rows = train.select(range(2)).to_dict()
    completions = [f"So the answer is {rows['groundtruth'][0]}.", "The answer is 99."]
    assert trainer.score_completions(rows, completions, [[5], [5]]).tolist() == [1.0, 0.0]
    trainer.train()
    assert any("rewards/answer_accuracy/mean" in h for h in trainer.state.log_history)
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and metrics["eval_num_questions"] == 4


def _lora_trainer(tmp_path, demo_tokenizer, name, seed=0, peft_config=None, **overrides):
    base = tmp_path / "base"
    if not base.exists():
        build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2).save_pretrained(base)
    from transformers import AutoModelForCausalLM

    config = _config(tmp_path / name, max_steps=1, learning_rate=1e-2, model_name_or_path=str(base), seed=seed,
                     **overrides)
    return _trainer(config, demo_tokenizer, model=AutoModelForCausalLM.from_pretrained(base), peft_config=peft_config)


def test_policy_adapters_initialise_from_seed(tmp_path, demo_tokenizer):
    """The caller's RNG state must not matter, `seed` must (issue 18: the policy's adapters were built outside
    the seeded block)."""
    def adapters(seed, noise):
        torch.manual_seed(noise)
        trainer = _lora_trainer(tmp_path, demo_tokenizer, f"{seed}-{noise}", seed=seed, use_lora=True, lora_r=4)
        return {n: p for n, p in _params(trainer.model).items() if "lora_A" in n}

    first, again, other = adapters(1, 100), adapters(1, 200), adapters(2, 100)
    assert any("policy." in n for n in first) and any("value." in n for n in first)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not any(torch.equal(first[n], other[n]) for n in first)


def test_peft_config_trains_exactly_like_use_lora(tmp_path, demo_tokenizer):
    """peft_config= crashed at the first rollout (the value network took the PeftModel's body wrongly, issue 18)."""
    from peft import LoraConfig

    flag = _lora_trainer(tmp_path, demo_tokenizer, "flag", use_lora=True, lora_r=4)
    args = flag.args
    flag.train()  # each trainer built and trained in turn: the same RNG stream for both
    lora = LoraConfig(r=4, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, task_type="CAUSAL_LM",
                      target_modules=args.lora_target_modules[0])  # "all-linear", as use_lora builds it
    given = _lora_trainer(tmp_path, demo_tokenizer, "given", peft_config=lora)
    before = _params(given.model)
    given.train()
    after_flag, after_given = _params(flag.model), _params(given.model)
    assert after_flag.keys() == after_given.keys()
    moved = [n for n in before if not torch.equal(before[n], after_given[n])]
    assert any("policy." in n and "lora_" in n for n in moved) and any("value.backbone" in n for n in moved)
    assert all(torch.equal(after_flag[n], after_given[n]) for n in after_flag)  # bit for bit, the same seed


def test_a_rollout_discarded_for_a_non_finite_reward_leaves_the_kl_coefficient_alone(tmp_path, demo_tokenizer):
    """A discarded rollout trains nothing, so its KL must not steer beta either (the adaptive controller moved on
    the discarded rollout's KL)."""
    calls = []

    def nan_first(prompts, completions, **kwargs):
        calls.append(1)
        return [float("nan") if len(calls) == 1 else 0.0] * len(completions)

    config = _config(tmp_path, max_steps=2, max_nonfinite_updates=5, adaptive_kl=True, kl_coef=0.05,
                     reward_funcs=["answer_accuracy"])
    trainer = _trainer(config, demo_tokenizer, reward_funcs=[nan_first])
    betas = []
    original = trainer.kl_ctl.update
    trainer.kl_ctl.update = lambda *a, **k: (betas.append(trainer.kl_ctl.value), original(*a, **k))[1]
    trainer.train()
    assert len(calls) >= 2, "the run rolled out once only"
    assert len(betas) == len(calls) - 1, f"beta moved on the discarded rollout ({len(betas)} updates, {len(calls)} rollouts)"
