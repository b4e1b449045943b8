"""LatroTrainer end to end on tiny models: training, saving, resuming, LoRA, forward counts, errors."""

import json
import os

import datasets
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler
from transformers import AutoModelForCausalLM

from implicit_reasoning.trainer import LatroConfig, LatroTrainer
from implicit_reasoning.trainer.core.guard import NonFiniteUpdatesError
from implicit_reasoning.trainer.core.rollout_trainer import PromptGroupSampler


def latro_args(tmp_path, **overrides) -> LatroConfig:
    values = dict(
        output_dir=str(tmp_path),
        rloo_k=2,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=2,
        response_length=6,
        rollout_batch_size=64,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        dataset_name="arithmetic",
        per_device_eval_batch_size=8,
        max_eval_samples=8,
        eval_max_new_tokens=8,
    )
    values.update(overrides)
    return LatroConfig(**values)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_user_script_trains_saves_and_resumes(tmp_path, tiny_gpt2, word_tokenizer, addition_dataset):
    args = latro_args(tmp_path, save_strategy="steps", save_steps=2, stop_seqs=["The answer is"])
    before = snapshot(tiny_gpt2)
    trainer = LatroTrainer(tiny_gpt2, args, train_dataset=addition_dataset, processing_class=word_tokenizer)
    assert trainer.processing_class.pad_token == "[UNK]"  # chosen generically: no pad -> unk
    assert word_tokenizer.pad_token is None and word_tokenizer.padding_side == "right"  # the user's object untouched
    trainer.train()
    assert trainer.state.global_step == 2
    changed = [n for n, p in tiny_gpt2.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert len(changed) > len(before) // 2

    final = tmp_path / "final"
    trainer.save_model(str(final))
    reloaded = AutoModelForCausalLM.from_pretrained(str(final))
    ids = torch.tensor([[3, 4, 5, 6]])
    assert torch.allclose(reloaded.eval()(ids).logits, tiny_gpt2.eval()(ids).logits, atol=1e-5)

    rows = [json.loads(line) for line in open(tmp_path / "samples.jsonl")]
    assert rows and set(rows[0]) >= {"step", "prompt", "rationale", "answer", "reward", "advantage"}
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert logged and all(-1e6 < h["reward"] <= 0 for h in logged)

    resumed_args = latro_args(tmp_path, max_steps=4, save_strategy="no", stop_seqs=["The answer is"])
    resumed = LatroTrainer(
        AutoModelForCausalLM.from_pretrained(str(final)),
        resumed_args,
        train_dataset=addition_dataset,
        processing_class=word_tokenizer,
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert resumed.state.global_step == 4
    steps = [h["step"] for h in resumed.state.log_history if "loss" in h]
    assert steps == [1, 2, 3, 4]  # history continues from the checkpoint, no restart at 1


@pytest.mark.parametrize("score_from_generation", [True, False])
def test_forward_work_per_rollout(tmp_path, tiny_llama, demo_tokenizer, addition_dataset, score_from_generation,
                                  monkeypatch):
    """Generation (one prefill of the distinct prompts, then generate) + (answer-only cache continuation | one
    no-grad pass over [x;z;y]) + one reference pass over [x;z] + one grad pass per micro-batch; each pass over
    [x; ...] runs each distinct prompt once (a prefill) and the samples on its cache. Nothing else touches the
    models."""
    from implicit_reasoning.runtime import kv_cache
    from implicit_reasoning.runtime.kv_cache import cache_argument

    monkeypatch.setattr(kv_cache, "MIN_SAVED_TOKENS", 1)  # 14-token prompts: share them anyway
    args = latro_args(tmp_path, max_steps=1, rloo_k=4, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                      score_from_generation=score_from_generation)
    trainer = LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer)
    calls = []  # (model, grad, in generate, input width, cached columns)
    generating = {"on": False}

    def count(kind):
        def hook(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            cache = kwargs.get(cache_argument(module))
            cached = cache.get_seq_length() if cache is not None else 0
            calls.append((kind, torch.is_grad_enabled(), generating["on"], ids.shape, cached))

        return hook

    tiny_llama.register_forward_pre_hook(count("policy"), with_kwargs=True)
    trainer.ref_model.register_forward_pre_hook(count("reference"), with_kwargs=True)
    generate = tiny_llama.generate

    def counted_generate(*a, **k):
        generating["on"] = True
        try:
            return generate(*a, **k)
        finally:
            generating["on"] = False

    tiny_llama.generate = counted_generate
    trainer.train()
    outside = [c for c in calls if not c[2]]
    inside = [c for c in calls if c[2]]
    assert inside and all(c[0] == "policy" and not c[1] for c in inside)
    # one update = 2 prompts x K=4 = 8 samples in one chunk, 2 micro-batches; prompts of 14 tokens
    prefill = (2, torch.Size([2, 13]), 0)  # rows, (distinct prompts, all columns but the last), nothing cached
    assert inside[0][3] == torch.Size([8, 1]) and inside[0][4] == 13  # generate: each sample's last prompt column
    # the grad pass, per micro-batch (its 4 rows hold one prompt): the prompt once with grad, then its samples on it
    grad = [c[3:] for c in outside if c[1]]
    assert all(c[0] == "policy" for c in outside if c[1])
    assert grad[0::2] == [(torch.Size([1, 13]), 0)] * 2 and all(g[0][0] == 4 and g[1] == 13 for g in grad[1::2])
    reference = [c[3:] for c in outside if c[0] == "reference"]
    assert reference[0] == prefill[1:] and len(reference) == 2
    assert reference[1][0][0] == 8 and reference[1][1] == 13  # [x_last; z] of every sample on the prompts' cache
    no_grad = [c[3:] for c in outside if c[0] == "policy" and not c[1]]
    assert no_grad[0] == prefill[1:]  # generation's shared prefill (run before generate)
    answer_widths = {len(demo_tokenizer(r, add_special_tokens=False).input_ids) + 1  # y plus eos
                     for r in addition_dataset["responses"]}
    if score_from_generation:  # only [last kept token; y] is fed, on top of generation's cache
        assert len(no_grad) == 2
        (rows, width), cached = no_grad[1]
        assert rows == 8 and width - 1 in answer_widths and cached > 13
    else:  # a pass over [x; z; y]: the prompts once, then [x_last; z; y] per sample
        assert len(no_grad) == 3 and no_grad[1] == prefill[1:]
        (rows, width), cached = no_grad[2]
        assert rows == 8 and width > max(answer_widths) + 1 and cached == 13


def test_lora_trains_adapter_only_and_reference_is_disabled_adapter(
    tmp_path, tiny_llama, demo_tokenizer, addition_dataset
):
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    base_logits = tiny_llama(ids).logits.detach().clone()
    tiny_llama.save_pretrained(tmp_path / "base")  # LoRA adapters record where their base weights load from
    args = latro_args(tmp_path, use_lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0, learning_rate=5e-2,
                      model_name_or_path=str(tmp_path / "base"))
    trainer = LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer)
    assert trainer.ref_model is None  # no second model: the reference is the same weights, adapter off
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = snapshot(trainer.model)
    trainer.train()
    after = snapshot(trainer.model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and changed <= trainable  # only adapter weights moved
    with trainer.reference_model() as ref:
        assert torch.allclose(ref(ids).logits, base_logits, atol=1e-5)
    assert not torch.allclose(trainer.model(ids).logits, base_logits, atol=1e-5)


def test_nonfinite_loss_skips_update_then_stops(tmp_path, tiny_llama, demo_tokenizer, addition_dataset):
    args = latro_args(tmp_path, max_steps=3, gradient_accumulation_steps=1, max_nonfinite_updates=3)
    trainer = LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer)
    objective = trainer.compute_objective

    def nan_objective(model, batch):
        parts = objective(model, batch)
        return {**parts, "loss": parts["loss"] * float("nan")}

    trainer.compute_objective = nan_objective
    before = snapshot(tiny_llama)
    with pytest.raises(NonFiniteUpdatesError, match="3 non-finite updates in a row.*non-finite loss"):
        trainer.train()
    assert trainer.update_guard.skipped_updates == 3
    assert all(torch.equal(p.detach(), before[n]) for n, p in tiny_llama.named_parameters())


def test_missing_column_names_dataset_and_column(tmp_path, tiny_llama, demo_tokenizer):
    bad = datasets.Dataset.from_list([{"queries": "q", "groundtruth": "1"}])
    with pytest.raises(ValueError, match=r"train dataset is missing column\(s\) \['responses'\]"):
        LatroTrainer(tiny_llama, latro_args(tmp_path), train_dataset=bad, processing_class=demo_tokenizer)


def test_evaluate_reports_accuracy_and_maj_at_k(tmp_path, tiny_llama, demo_tokenizer, addition_dataset):
    from implicit_reasoning.evaluation.checkers import extract_answer, is_correct, majority_vote

    args = latro_args(tmp_path, eval_num_samples=3)
    trainer = LatroTrainer(
        tiny_llama, args, train_dataset=addition_dataset, eval_dataset=addition_dataset, processing_class=demo_tokenizer
    )
    seen = {}
    gather = trainer._gather_records
    trainer._gather_records = lambda records: seen.setdefault("records", gather(records))
    metrics = trainer.evaluate()
    records = seen["records"]
    assert [r["index"] for r in records] == list(range(8)) and metrics["eval_num_questions"] == 8
    for r in records:  # every verdict is the dataset checker's, on the record's own texts (cut off: stated only)
        assert r["correct"] == is_correct("arithmetic", r["completion"], r["groundtruth"], r["cut_off"])
        votes = [extract_answer("arithmetic", s, cut) for s, cut in zip(r["samples"], r["sample_cut_off"])]
        assert len(votes) == 3 and r["majority"] == majority_vote(votes)
    assert metrics["eval_accuracy"] == sum(r["correct"] for r in records) / 8
    assert metrics["eval_maj@3"] == sum(r["majority_correct"] for r in records) / 8


@pytest.mark.parametrize("updates_per_rollout", [1, 2])
def test_sampler_gives_each_process_its_own_prompts_for_a_whole_update(updates_per_rollout):
    repeats = 3 * updates_per_rollout  # gradient_accumulation_steps x updates per rollout
    sampler = PromptGroupSampler(num_prompts=16, prompts_per_process=2, num_processes=2, repeats=repeats, seed=0)
    seen = []
    for rank in range(2):
        shard = BatchSamplerShard(BatchSampler(sampler, 2, drop_last=False), num_processes=2, process_index=rank)
        seen.append(list(shard))
    assert len(seen[0]) == len(seen[1]) == (16 // 4) * repeats
    for rank in range(2):
        cycles = [seen[rank][i : i + repeats] for i in range(0, len(seen[rank]), repeats)]
        assert all(all(b == c[0] for b in c) for c in cycles)  # same prompts for every micro-step of the cycle
    first = {tuple(seen[r][0]) for r in range(2)}
    assert len(first) == 2  # the two processes draw different prompts
    everything = [i for r in range(2) for c in seen[r][::repeats] for i in c]
    assert sorted(everything) == list(range(16))  # an epoch covers every prompt once


def test_config_errors_name_the_fields():
    with pytest.raises(ValueError, match=r"per_device_train_batch_size \(4\) \* gradient_accumulation_steps \(3\) = 12.*rloo_k \(8\)"):
        LatroConfig(output_dir="x", rloo_k=8, per_device_train_batch_size=4, gradient_accumulation_steps=3)
    with pytest.raises(ValueError, match="rloo_k=1"):
        LatroConfig(output_dir="x", rloo_k=1, per_device_train_batch_size=4)
    with pytest.raises(ValueError, match="stop_token='bos'"):
        LatroConfig(output_dir="x", rloo_k=2, per_device_train_batch_size=4, stop_token="bos")
    with pytest.raises(ValueError, match="temperature=0"):
        LatroConfig(output_dir="x", rloo_k=2, per_device_train_batch_size=4, temperature=0)
    with pytest.raises(ValueError, match="penalty_reward_value=0.5"):
        LatroConfig(output_dir="x", rloo_k=2, per_device_train_batch_size=4, penalty_reward_value=0.5)
    config = LatroConfig(output_dir="x", rloo_k=4, per_device_train_batch_size=8, gradient_accumulation_steps=6)
    assert config.prompts_per_update == 12
    assert (config.kl_coef, config.sft_coef, config.rloo_k) == (0.05, 1.0, 4)


def test_latro_paper_defaults():
    config = LatroConfig(output_dir="x")
    assert (config.rloo_k, config.kl_coef, config.sft_coef, config.learning_rate) == (16, 0.05, 1.0, 5e-7)
    assert config.non_stop_penalty and config.penalty_reward_value == 2.0
    assert "The answer is" in config.stop_seqs


def test_flash_attention_without_package_is_a_clear_error():
    if os.environ.get("IR_HAS_FLASH"):
        pytest.skip("flash-attn installed")
    with pytest.raises(ValueError, match="flash_attention_2.*implicit-reasoning\\[flash\\]"):
        LatroConfig(output_dir="x", rloo_k=2, per_device_train_batch_size=4, attn_implementation="flash_attention_2")


def test_eval_shards_are_padded_to_equal_length():
    from implicit_reasoning.evaluation.accuracy import shard_indices

    shards = [shard_indices(5, rank, 2) for rank in range(2)]
    assert shards == [([0, 2, 4], 3), ([1, 3, 0], 2)]  # rank 1 pads with row 0, keeps 2 real rows
    assert [shard_indices(1, rank, 3) for rank in range(3)] == [([0], 1), ([0], 0), ([0], 0)]
    assert shard_indices(0, 0, 2) == ([], 0)


class TwoUpdatesPerRollout(LatroTrainer):
    """Reuses each rollout for two optimizer updates (as PPO does) and records what it served."""

    @property
    def updates_per_rollout(self) -> int:
        return 2

    def make_rollout(self, prompts):
        self.rollouts = getattr(self, "rollouts", 0) + 1
        self.rollout_prompts = list(prompts["queries"])
        return super().make_rollout(prompts)

    def _prepare_inputs(self, inputs):
        batch = super()._prepare_inputs(inputs)
        self.served = getattr(self, "served", []) + [(batch["rollout_pass"], inputs["queries"] == self.rollout_prompts)]
        return batch


def test_resume_inside_a_rollout_cycle_keeps_rollouts_aligned_with_prompts(
    tmp_path, tiny_llama, demo_tokenizer, addition_dataset
):
    args = latro_args(tmp_path, max_steps=3, gradient_accumulation_steps=1, save_strategy="steps", save_steps=3)
    first = TwoUpdatesPerRollout(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer)
    first.train()
    assert first.rollouts == 2 and [p for p, _ in first.served] == [0, 1, 0]
    # resume from step 3, which is the middle of the second cycle (updates 3-4)
    resumed = TwoUpdatesPerRollout(
        AutoModelForCausalLM.from_pretrained(str(tmp_path / "checkpoint-3")),
        latro_args(tmp_path, max_steps=6, gradient_accumulation_steps=1),
        train_dataset=addition_dataset,
        processing_class=demo_tokenizer,
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    # update 4 rolls out afresh for the cycle's prompts; updates 5-6 are a normal cycle
    assert [p for p, _ in resumed.served] == [0, 0, 1] and resumed.rollouts == 2
    assert all(aligned for _, aligned in first.served + resumed.served)


def test_num_evaluations_spreads_evaluations_and_one_means_the_last_step(tmp_path):
    import math

    for n, expected in ((4, 25), (1, 100)):
        config = LatroConfig(output_dir="x", rloo_k=2, per_device_train_batch_size=4, num_evaluations=n, max_steps=100)
        assert 0 < config.eval_steps < 1  # Trainer reads eval_steps >= 1 as a step count, not a ratio
        assert math.ceil(100 * config.eval_steps) == expected  # how Trainer turns a ratio into a step count
        assert config.metric_for_best_model == "accuracy" and config.greater_is_better


def test_lora_with_a_separate_reference_is_an_error():
    with pytest.raises(ValueError, match="ref_model_name_or_path='m' with use_lora=True"):
        LatroConfig(output_dir="x", rloo_k=2, per_device_train_batch_size=4, use_lora=True, ref_model_name_or_path="m")


def test_scoring_from_generation_gives_the_full_pass_rewards_and_update(tmp_path, demo_tokenizer, addition_dataset):
    """Same seed, same samples: R, KL and the update agree whichever way the policy terms are scored."""
    from implicit_reasoning.demo import build_demo_model

    results = {}
    for reuse in (True, False):
        torch.manual_seed(0)
        model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
        args = latro_args(tmp_path / str(reuse), max_steps=1, score_from_generation=reuse, seed=3,
                          stop_seqs=["+"])
        trainer = LatroTrainer(model, args, train_dataset=addition_dataset, processing_class=demo_tokenizer)
        trainer.train()
        logged = trainer.state.log_history[0]
        results[reuse] = (logged["reward"], logged["kl"], logged["rationale_length"], snapshot(model))
    (r1, kl1, n1, p1), (r2, kl2, n2, p2) = results[True], results[False]
    assert n1 == n2 and r1 == pytest.approx(r2, abs=1e-4) and kl1 == pytest.approx(kl2, abs=1e-4)
    assert all(torch.allclose(p1[n], p2[n], atol=1e-5) for n in p1)


def test_a_cache_that_cannot_be_continued_falls_back_to_the_full_pass(
    tmp_path, tiny_llama, demo_tokenizer, addition_dataset, monkeypatch
):
    import implicit_reasoning.scoring.scored_generation as scored

    def refuse(*args, **kwargs):
        raise scored.CacheReuseError("test")

    monkeypatch.setattr(scored, "continue_cache", refuse)
    trainer = LatroTrainer(tiny_llama, latro_args(tmp_path, max_steps=1), train_dataset=addition_dataset,
                           processing_class=demo_tokenizer)
    with pytest.warns(UserWarning, match="scoring with a full pass"):
        trainer.train()
    assert trainer.state.global_step == 1 and torch.isfinite(torch.tensor(trainer.state.log_history[0]["reward"]))
