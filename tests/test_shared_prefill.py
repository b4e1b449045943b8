"""One prefill per distinct prompt (`shared_prefill`, `runtime/kv_cache.py`): the same samples (same seed) and the same
log-probs (float32 rounding) as running every repeated prompt in full, in generation, in scoring from generation, in
no-grad scoring passes and in the LaTRO / Markovian / PPO rollouts, with the prompt run once per distinct prompt."""

import warnings

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from implicit_reasoning.analysis.forward_count import ForwardCounter
from implicit_reasoning.generation.sampling import generate, sampling_config
from implicit_reasoning.objectives.advantages import kept_lengths
from implicit_reasoning.runtime import kv_cache
from implicit_reasoning.scoring.packing import pack_rows
from implicit_reasoning.scoring.scored_generation import generate_scored
from implicit_reasoning.scoring.window import score_rows, window_logprobs

VOCAB, PAD, EOS = 40, 0, 1
DISTINCT = [[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15]]  # ragged (left padding); [8]: no cached column of its own
K = 3
PROMPTS = [p for p in DISTINCT for _ in range(K)]
ANSWERS = [[20 + i % 7, 21] if i % 2 else [30] for i in range(len(PROMPTS))]
ATOL = 1e-5  # float32: the same sums, batched differently


@pytest.fixture(autouse=True)
def _share_any_saving(monkeypatch):
    """These prompts are a few tokens long: share whatever repeats (the default needs 256 saved tokens)."""
    monkeypatch.setattr(kv_cache, "MIN_SAVED_TOKENS", 1)


def llama():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                        pad_token_id=PAD, eos_token_id=EOS)).eval()


def gpt2():  # learned absolute positions: a wrong position id would show
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                      eos_token_id=EOS, bos_token_id=EOS)).eval()


def _generated(model, shared, batch_size, stops=(EOS, 3), stop_seqs=(), **sampling):
    config = sampling_config(10, PAD, list(stops), **sampling)
    kept = lambda t: kept_lengths(t, list(stops), [list(s) for s in stop_seqs])  # noqa: E731
    counter = ForwardCounter().attach(model, "policy")
    torch.manual_seed(1)
    plain = generate(model, PROMPTS, config, batch_size, stop_seqs, shared_prefill=shared)
    torch.manual_seed(1)
    scored = generate_scored(model, PROMPTS, config, batch_size, stop_seqs, ANSWERS, kept, shared_prefill=shared)
    counter.detach()
    return plain, scored, counter


@pytest.mark.parametrize("build", [llama, gpt2])
@pytest.mark.parametrize("sampling", [dict(), dict(temperature=1.7, top_k=5), dict(temperature=0.6, top_p=0.8),
                                      dict(greedy=True)], ids=["plain", "top-k", "top-p", "greedy"])
@pytest.mark.parametrize("batch_size", [12, 5], ids=["one-chunk", "chunks-split-groups"])
def test_generation_samples_and_logprobs_equal_the_repeated_prompt_path(build, sampling, batch_size):
    model = build()
    plain, scored, counter = _generated(model, False, batch_size, **sampling)
    shared_plain, shared_scored, shared_counter = _generated(model, True, batch_size, **sampling)
    assert len(set(kept_lengths(scored.tokens, [EOS, 3], []).tolist())) > 1 or sampling.get("greedy")
    assert torch.equal(plain, shared_plain) and torch.equal(scored.tokens, shared_scored.tokens)
    assert torch.equal(plain, scored.tokens)  # the recorder does not change what is sampled
    assert shared_scored.failure is None
    torch.testing.assert_close(shared_scored.token_logps, scored.token_logps, atol=ATOL, rtol=0)
    torch.testing.assert_close(shared_scored.answer_logps, scored.answer_logps, atol=ATOL, rtol=0)
    # the prompts' prefill: every row's whole prompt, against each distinct prompt of a chunk once (but its last
    # column, which generate runs for every row) - counted inside generation, per call of generate / generate_scored
    prefill_plain = counter.count("policy", "generate", key="real_tokens") - shared_counter.count(
        "policy", "generate", key="real_tokens")
    chunks = [PROMPTS[i : i + batch_size] for i in range(0, len(PROMPTS), batch_size)]
    saved = sum(len(p) - 1 for chunk in chunks for p in chunk) - sum(
        len(p) - 1 for chunk in chunks for p in {tuple(p) for p in chunk})
    assert prefill_plain == 2 * saved > 0
    assert shared_counter.count("policy", "score") == counter.count("policy", "score")  # scoring: unchanged


def test_a_lora_policy_and_its_adapter_disabled_reference_share_exactly():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                               init_lora_weights=False)).eval()
    _, scored, _ = _generated(model, False, 7)
    _, shared, counter = _generated(model, True, 7)
    assert torch.equal(scored.tokens, shared.tokens) and shared.failure is None
    torch.testing.assert_close(shared.token_logps, scored.token_logps, atol=ATOL, rtol=0)
    torch.testing.assert_close(shared.answer_logps, scored.answer_logps, atol=ATOL, rtol=0)
    rows = _scoring_rows(False)
    with model.disable_adapter():  # the reference with LoRA
        full, cached = (score_rows(model, rows, (2,), 12, shared_prefill=flag)[2] for flag in (False, True))
    torch.testing.assert_close(cached, full, atol=ATOL, rtol=0)


def test_stop_sequences_and_min_new_tokens_behave_as_without_sharing():
    model = llama()
    plain, scored, _ = _generated(model, False, 7, stop_seqs=[[4, 5]])
    shared_plain, shared_scored, _ = _generated(model, True, 7, stop_seqs=[[4, 5]])
    assert torch.equal(plain, shared_plain) and torch.equal(scored.tokens, shared_scored.tokens)
    torch.testing.assert_close(shared_scored.answer_logps, scored.answer_logps, atol=ATOL, rtol=0)
    config = sampling_config(6, PAD, [EOS], min_new_tokens=6)
    runs = []
    for shared in (False, True):
        torch.manual_seed(2)
        runs.append(generate(model, PROMPTS, config, 12, shared_prefill=shared))
    assert torch.equal(*runs) and not (runs[0] == EOS).any()


def test_a_chunk_that_would_save_too_few_tokens_runs_every_row(monkeypatch):
    model = llama()
    counter = ForwardCounter().attach(model, "policy")
    saved = sum(len(p) - 1 for p in PROMPTS) - sum(len(p) - 1 for p in DISTINCT)  # 14 real tokens
    real = []
    for minimum in (saved + 1, saved):
        monkeypatch.setattr(kv_cache, "MIN_SAVED_TOKENS", minimum)
        before = counter.count("policy", "generate", key="real_tokens")
        torch.manual_seed(3)
        generate(model, PROMPTS, sampling_config(5, PAD, None), 12, shared_prefill=True)
        real.append(counter.count("policy", "generate", key="real_tokens") - before)
    assert real[0] - real[1] == saved


def test_distinct_prompts_share_nothing_and_run_as_before():
    model = llama()
    counter = ForwardCounter().attach(model, "policy")
    runs = []
    for shared in (False, True):
        torch.manual_seed(3)
        runs.append(generate(model, DISTINCT, sampling_config(5, PAD, None), 8, shared_prefill=shared))
    assert torch.equal(*runs)
    assert counter.count("policy", "generate", key="real_tokens") == 2 * (sum(map(len, DISTINCT)) + 4 * 4)


def _scoring_rows(with_answer: bool):
    generator = torch.Generator().manual_seed(0)
    z = [torch.randint(2, VOCAB, (int(torch.randint(0, 6, (1,), generator=generator)),), generator=generator).tolist()
         for _ in PROMPTS]
    assert any(not r for r in z)  # an empty rationale: the answer follows the prompt directly
    return pack_rows([PROMPTS, z, ANSWERS] if with_answer else [PROMPTS, z], PAD, align=1)


@pytest.mark.parametrize("build", [llama, gpt2])
@pytest.mark.parametrize("chunk", [12, 5])
def test_scoring_passes_equal_the_full_pass_with_each_prompt_run_once_per_chunk(build, chunk):
    model = build()
    for rows, segments in ((_scoring_rows(True), (2, 3)), (_scoring_rows(False), (2,))):
        counter = ForwardCounter().attach(model, "m")
        full = score_rows(model, rows, segments, chunk)
        tokens_full = counter.count("m", key="real_tokens")
        shared = score_rows(model, rows, segments, chunk, shared_prefill=True)
        counter.detach()
        for s in segments:
            torch.testing.assert_close(shared[s], full[s], atol=ATOL, rtol=0)
        groups = [range(i, min(i + chunk, len(PROMPTS))) for i in range(0, len(PROMPTS), chunk)]
        repeats = sum(len(PROMPTS[i]) - 1 for g in groups for i in g) - sum(
            len(p) - 1 for g in groups for p in {tuple(PROMPTS[i]) for i in g})
        assert counter.count("m", key="real_tokens") - tokens_full == tokens_full - repeats


def test_window_logprobs_entropy_and_temperature_with_a_shared_prefill():
    model = llama()
    rows = _scoring_rows(True)
    scored = rows["segment_ids"] >= 2
    with torch.no_grad():
        full, full_window = window_logprobs(model, rows, scored, entropy=True, temperature=0.7)
        shared, window = window_logprobs(model, rows, scored, entropy=True, temperature=0.7, shared_prefill=True)
    torch.testing.assert_close(shared, full, atol=ATOL, rtol=0)
    torch.testing.assert_close(window["token_entropy"], full_window["token_entropy"], atol=ATOL, rtol=0)
    assert torch.equal(window["input_ids"], full_window["input_ids"])


def test_a_cache_that_cannot_be_expanded_falls_back_with_one_warning(monkeypatch):
    """Mistral with a sliding window keeps a DynamicSlidingWindowLayer cache: every row runs its prompt, warned once."""
    monkeypatch.setattr(kv_cache, "_UNEXPANDABLE", {})
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             sliding_window=4, pad_token_id=PAD, eos_token_id=EOS)).eval()
    config = sampling_config(6, PAD, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = []
        for shared in (False, True, True):
            torch.manual_seed(4)
            runs.append(generate(model, PROMPTS, config, 12, shared_prefill=shared))
        rows = _scoring_rows(False)
        scores = [score_rows(model, rows, (2,), 12, shared_prefill=shared)[2] for shared in (False, True)]
    messages = [str(w.message) for w in caught if "prefilled once per sample" in str(w.message)]
    assert len(messages) == 1 and "DynamicSlidingWindowLayer" in messages[0]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    assert torch.equal(scores[0], scores[1])  # the fallback is the full pass itself


def test_distinct_rows_and_the_cache_name():
    first, inverse = kv_cache.distinct_rows(torch.tensor([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4]]))
    assert first.tolist() == [0, 1, 3] and inverse.tolist() == [0, 1, 0, 2, 1]
    import transformers

    from packaging.version import Version

    new = Version(transformers.__version__) >= Version("5.25")
    assert kv_cache.cache_argument(llama()) == ("cache" if new else "past_key_values")


# --------------------------------------------------------------------------------------------- the trainers
def _rollouts(build, record, seed=5):
    """make_rollout of two trainers that differ only in `shared_prefill`, same weights, same seed; what `record`
    collected during each, and each one's forward counter."""
    out = []
    for shared in (False, True):
        trainer, prompts = build(shared)
        counter = ForwardCounter().attach(trainer.unwrapped_policy(), "policy").attach(trainer.ref_model, "reference")
        seen: dict = {}
        record(trainer, seen)
        torch.manual_seed(seed)
        rollout = trainer.make_rollout(prompts)
        counter.detach()
        out.append((rollout, seen, counter))
    return out


def _assert_same_rollout(plain, shared, exact=("input_ids", "attention_mask", "segment_ids")):
    for key in exact:
        assert torch.equal(plain[key], shared[key]), key
    for key, value in plain.items():
        if key not in exact and torch.is_tensor(value) and value.is_floating_point():
            torch.testing.assert_close(shared[key], value, atol=ATOL, rtol=0, equal_nan=True, msg=key)


@pytest.mark.parametrize("score_from_generation", [True, False])
def test_latro_rollout_is_the_same_with_one_prefill_per_prompt(tmp_path, demo_tokenizer, addition_dataset, monkeypatch,
                                                               score_from_generation):
    import copy

    from test_latro_trainer import latro_args

    from implicit_reasoning.demo import build_demo_model
    from implicit_reasoning.trainer import LatroTrainer
    from implicit_reasoning.trainer.latro import trainer as latro_trainer

    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    rewards = latro_trainer.latro_rewards

    def build(shared):
        args = latro_args(tmp_path / str(shared), rloo_k=3, per_device_train_batch_size=6, gradient_accumulation_steps=1,
                          rollout_batch_size=4, response_length=8, shared_prefill=shared,
                          score_from_generation=score_from_generation)
        trainer = LatroTrainer(copy.deepcopy(model), args, train_dataset=addition_dataset,
                               processing_class=demo_tokenizer)
        return trainer, addition_dataset.select([0, 9]).to_dict()  # prompts of different lengths

    def record(trainer, seen):
        monkeypatch.setattr(latro_trainer, "latro_rewards", lambda R, logp, ref, **kw: seen.update(
            R=R, logp=logp, ref=ref) or rewards(R, logp, ref, **kw))

    (plain, got, plain_count), (shared, got_shared, shared_count) = _rollouts(build, record)
    _assert_same_rollout(plain, shared)
    for key in ("R", "logp", "ref"):  # log pi(y | x, z), log pi(z | x), log pi_ref(z | x)
        torch.testing.assert_close(got_shared[key], got[key], atol=ATOL, rtol=0)
    for name, phase in (("policy", "generate"), ("reference", "score")):  # generation, the reference over [x; z]
        assert shared_count.count(name, phase, key="real_tokens") < plain_count.count(name, phase, key="real_tokens")


def test_markovian_rollout_is_the_same_with_one_prefill_per_prompt(tmp_path):
    from test_markovian_trainer import make_trainer

    from implicit_reasoning.data.registry import load_markovian_examples
    from implicit_reasoning.demo import build_demo_tokenizer

    tok = build_demo_tokenizer()
    config = "num_terms=3,max_value=20,num_examples=8"
    data = (load_markovian_examples("arithmetic", "train", tok, dataset_config=config), None)

    def build(shared):
        trainer = make_trainer(tok, data, tmp_path / str(shared), rloo_k=3, per_device_train_batch_size=6,
                               rollout_batch_size=4, shared_prefill=shared)
        return trainer, {key: data[0][key][:2] for key in ("question", "answer")}

    def record(trainer, seen):
        log = trainer._log_rollout
        trainer._log_rollout = lambda *a: seen.update(cots=a[2], scores=a[4], base=a[5]) or log(*a)

    (plain, got, plain_count), (shared, got_shared, shared_count) = _rollouts(build, record)
    _assert_same_rollout(plain, shared)
    assert got["cots"] == got_shared["cots"]
    torch.testing.assert_close(got_shared["scores"], got["scores"], atol=ATOL, rtol=0)  # the critic's answer log-prob
    torch.testing.assert_close(got_shared["base"], got["base"], atol=ATOL, rtol=0)
    for name, phase in (("policy", "generate"), ("reference", "score")):  # the actor's samples, the critic's scores
        assert shared_count.count(name, phase, key="real_tokens") < plain_count.count(name, phase, key="real_tokens")


@pytest.mark.parametrize("score_from_generation", [True, False])
def test_ppo_rollout_is_the_same_with_one_prefill_per_repeated_prompt(tmp_path, demo_tokenizer, score_from_generation):
    """PPO samples once per prompt: a prompt the batch holds twice is what it shares."""
    from test_ppo_trainer import _config, _trainer

    from implicit_reasoning.demo import build_demo_model

    def build(shared):
        config = _config(tmp_path / str(shared), per_device_train_batch_size=4, rollout_batch_size=4,
                         shared_prefill=shared, score_from_generation=score_from_generation,
                         reward_funcs=["answer_accuracy", "continuation_loglik"])
        model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
        trainer = _trainer(config, demo_tokenizer, model=model)
        return trainer, trainer.train_dataset.select([0, 0, 1, 1]).to_dict()

    (plain, _, plain_count), (shared, _, shared_count) = _rollouts(build, lambda trainer, seen: None)
    _assert_same_rollout(plain, shared)
    for name, phase in (("policy", "generate"), ("reference", "score")):  # generation, reference log-probs + reward
        assert shared_count.count(name, phase, key="real_tokens") < plain_count.count(name, phase, key="real_tokens")


def test_shared_prefill_false_and_zero3_run_every_prompt(tmp_path, demo_tokenizer, addition_dataset, monkeypatch):
    from test_latro_trainer import latro_args

    from implicit_reasoning.demo import build_demo_model
    from implicit_reasoning.trainer import LatroTrainer
    from implicit_reasoning.trainer.core import rollout_trainer

    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    trainer = LatroTrainer(model, latro_args(tmp_path), train_dataset=addition_dataset, processing_class=demo_tokenizer)
    assert trainer.args.shared_prefill and trainer.share_prefill
    monkeypatch.setattr(rollout_trainer, "is_zero3", lambda trainer: True)
    assert not trainer.share_prefill
    monkeypatch.undo()
    trainer.args.shared_prefill = False
    assert not trainer.share_prefill
    counter = ForwardCounter().attach(model, "policy")
    trainer.sample([[5, 6, 7, 8]], 4, 3)
    assert counter.count("policy", "generate", key="real_tokens") == 4 * 4 + 2 * 4  # each sample its whole prompt


def test_latro_grad_pass_with_one_prefill_per_prompt_gives_the_same_loss_and_gradients(
        tmp_path, demo_tokenizer, addition_dataset):
    from test_latro_trainer import latro_args

    from implicit_reasoning.demo import build_demo_model
    from implicit_reasoning.trainer import LatroTrainer

    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    args = latro_args(tmp_path, rloo_k=3, per_device_train_batch_size=6, gradient_accumulation_steps=1,
                      response_length=8)
    trainer = LatroTrainer(model, args, train_dataset=addition_dataset, processing_class=demo_tokenizer)
    assert trainer.share_prefill_with_grad
    torch.manual_seed(0)
    batch = trainer.make_rollout(addition_dataset.select([0, 9]).to_dict())
    counter = ForwardCounter().attach(model, "policy")
    results = []
    for shared in (False, True):
        trainer.args.shared_prefill = shared
        model.zero_grad(set_to_none=True)
        loss = trainer.compute_objective(model, batch)["loss"]
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
        tokens = counter.count("policy", "score", grad=True, key="real_tokens")
        results[-1] += (tokens,)
    (loss, grads, tokens), (shared_loss, shared_grads, total) = results
    torch.testing.assert_close(shared_loss, loss, atol=ATOL, rtol=0)
    for name, grad in grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    prompts = [len(demo_tokenizer(q).input_ids) for q in addition_dataset.select([0, 9])["queries"]]
    assert tokens - (total - tokens) == (3 - 1) * sum(n - 1 for n in prompts)  # each prompt once, not 3 times


def test_the_grad_pass_runs_every_prompt_where_sharing_would_not_be_exact(tmp_path, demo_tokenizer, addition_dataset):
    from test_latro_trainer import latro_args

    from implicit_reasoning.demo import build_demo_model
    from implicit_reasoning.trainer import LatroTrainer

    def trainer(**overrides):
        model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
        return LatroTrainer(model, latro_args(tmp_path, **overrides), train_dataset=addition_dataset,
                            processing_class=demo_tokenizer)

    assert trainer().share_prefill_with_grad
    assert not trainer(gradient_checkpointing=True).share_prefill_with_grad  # the replay drops a KV cache
    assert not trainer(disable_dropout=False).share_prefill_with_grad  # one mask would serve K samples
    assert not trainer(shared_prefill=False).share_prefill_with_grad
    assert trainer(gradient_checkpointing=True).share_prefill  # generation and no-grad scoring still share


@pytest.mark.parametrize("terms", [dict(kl_penalty=0.1, entropy_bonus=0.01), dict(kl_penalty=0.0, entropy_bonus=0.0)],
                         ids=["chunked-kl-and-entropy", "log-probs-only"])
def test_markovian_grad_pass_with_one_prefill_per_prompt_gives_the_same_loss_and_gradients(tmp_path, terms):
    from test_markovian_trainer import make_trainer

    from implicit_reasoning.data.registry import load_markovian_examples
    from implicit_reasoning.demo import build_demo_tokenizer

    tok = build_demo_tokenizer()
    data = (load_markovian_examples("arithmetic", "train", tok,
                                    dataset_config="num_terms=3,max_value=20,num_examples=8"), None)
    trainer = make_trainer(tok, data, tmp_path, rloo_k=3, per_device_train_batch_size=6, **terms)
    assert trainer.share_prefill_with_grad
    torch.manual_seed(0)
    batch = {**trainer.make_rollout({key: data[0][key][:2] for key in ("question", "answer")}), "rollout_pass": 0}
    model, reference = trainer.model, trainer.ref_model
    counter = ForwardCounter().attach(model, "policy").attach(reference, "reference")
    results = []
    for shared in (False, True):
        trainer.args.shared_prefill = shared
        model.zero_grad(set_to_none=True)
        out = trainer.compute_objective(model, batch)
        out["loss"].backward()
        results.append(({k: v.detach() for k, v in out.items()}, {n: p.grad.clone() for n, p in model.named_parameters()},
                        counter.count("policy", "score", grad=True, key="real_tokens"),
                        counter.count("reference", key="real_tokens")))
    (parts, grads, policy_tokens, ref_tokens), (shared_parts, shared_grads, policy_total, ref_total) = results
    for key, value in parts.items():
        torch.testing.assert_close(shared_parts[key], value, atol=ATOL, rtol=0, msg=key)
    for name, grad in grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    assert policy_total - policy_tokens < policy_tokens  # the 2 prompts once each, not 3 times
    if terms["kl_penalty"] > 0:  # the critic's logits for the KL: the prompts once too
        assert ref_total - ref_tokens < ref_tokens


def test_the_benchmarks_generation_time_includes_the_shared_prefill():
    """The prefill runs before `generate`: the counter times it as generation (not as scoring)."""
    import time

    model = llama()
    counter = ForwardCounter().attach(model, "policy")
    slow = []

    def slow_prefill(module, args, kwargs):
        if kv_cache.in_generation_prefill():
            slow.append(1)
            time.sleep(0.3)

    model.model.register_forward_pre_hook(slow_prefill, with_kwargs=True)
    generate(model, PROMPTS, sampling_config(2, PAD, None), 12, shared_prefill=True)
    assert slow == [1] and counter.generate_seconds["policy"] >= 0.3
    assert counter.count("policy", "generate", key="rows") == len(DISTINCT) + 2 * len(PROMPTS)
