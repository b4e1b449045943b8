"""STaRTrainer on tiny models: the iteration loop, rationalization, reset, preload, resume, DPO, validation."""

import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainerCallback

from implicit_reasoning.data.registry import load_task_dataset
from implicit_reasoning.demo import build_demo_model
from implicit_reasoning.objectives.star import dpo_pairs
from implicit_reasoning.trainer import STaRConfig, STaRTrainer
from implicit_reasoning.trainer.star import trainer as star_trainer

CONFIG = "num_terms=2,max_value=5,num_examples=8"


@pytest.fixture
def data(demo_tokenizer):
    train = load_task_dataset("arithmetic", "train", demo_tokenizer, dataset_config=CONFIG,
                              cot_trigger=STaRConfig.cot_trigger)
    evaluation = load_task_dataset("arithmetic", "eval", demo_tokenizer, dataset_config=CONFIG.replace("=8", "=4"))
    return train, evaluation


def star_args(tmp_path, **overrides) -> STaRConfig:
    values = dict(output_dir=str(tmp_path), num_iterations=2, start_steps=2, step_growth=1.0,
                  samples_per_train_question=2, per_device_train_batch_size=4, gen_batch_size=16,
                  response_length=12, learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to="none",
                  disable_tqdm=True, use_cpu=True, dataset_name="arithmetic", per_device_eval_batch_size=8,
                  skip_first_validation=True)
    values.update(overrides)
    return STaRConfig(**values)


def make(tmp_path, demo_tokenizer, data, model_seed=0, **overrides):
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2, seed=model_seed)
    return STaRTrainer(model, star_args(tmp_path, **overrides), train_dataset=data[0], eval_dataset=data[1],
                       processing_class=demo_tokenizer)


def answer_generator(tokenizer, answer_of):
    """A stand-in for generation: each prompt's completion is answer_of(prompt text) (then eos)."""

    def fake_generate(model, prompts, config, batch_size, *args, **kwargs):
        texts = [answer_of(tokenizer.decode(p)) for p in prompts]
        rows = [tokenizer(t, add_special_tokens=False).input_ids + [tokenizer.eos_token_id] for t in texts]
        width = config.max_new_tokens
        out = torch.full((len(rows), width), tokenizer.pad_token_id)
        for i, row in enumerate(rows):
            out[i, : min(len(row), width)] = torch.tensor(row[:width])
        return out

    return fake_generate


def solve(prompt):
    """A careful solver: the worked sum of the prompt's question."""
    terms = [int(t) for t in prompt.split("Question: ")[1].split("\n")[0].split(" + ")]
    return f"{terms[0]} + {terms[1]} = {sum(terms)}.\nAnswer: {sum(terms)}"


def generated(path, iteration):
    return [json.loads(line) for line in open(os.path.join(path, f"iteration_{iteration}", "generated.jsonl"))]


def test_iterations_generate_filter_train_and_save_their_generations(tmp_path, demo_tokenizer, data):
    trainer = make(tmp_path, demo_tokenizer, data, eval_strategy="no")
    trainer.train()
    assert trainer.state.global_step == 4  # 2 iterations x 2 steps
    for iteration in (0, 1):
        rows = generated(tmp_path, iteration)
        assert {"question", "prompt", "rationale", "prediction", "correct", "hinted"} <= set(rows[0])
        assert all(r["iteration"] == iteration for r in rows)
        hint_free = [r for r in rows if not r["hinted"]]
        assert len(hint_free) == 8 * 2  # every train question, samples_per_train_question each
    logged = [h for h in trainer.state.log_history if "iteration" in h]
    assert [h["iteration"] for h in logged] == [0.0, 1.0]
    assert all({"kept_samples", "rationalized_samples", "generation_accuracy"} <= set(h) for h in logged)


def test_rationalization_is_stored_with_the_hint_free_prompt(tmp_path, demo_tokenizer, data, monkeypatch):
    """The model answers 0 unless the prompt holds the hint; hinted successes are kept without the hint."""

    def answer_of(prompt):
        if "Hint" in prompt:
            return "Reasoning.\nAnswer: " + prompt.split("correct answer is ")[1].split(".)")[0]
        return "Guess.\nAnswer: 0"

    monkeypatch.setattr(star_trainer, "generate", answer_generator(demo_tokenizer, answer_of))
    trainer = make(tmp_path, demo_tokenizer, data, num_iterations=1, eval_strategy="no")
    trainer.train()
    rows = generated(tmp_path, 0)
    hinted = [r for r in rows if r["hinted"]]
    assert len(hinted) == 8 * 2 and all(r["correct"] for r in hinted)  # rationalized: every question
    assert all("Hint" not in r["prompt"] and r["prompt"] == data[0][r["question_index"]]["queries"] for r in hinted)
    assert not any(r["correct"] for r in rows if not r["hinted"])
    logged = next(h for h in trainer.state.log_history if "kept_samples" in h)
    assert logged["kept_samples"] == 16 and logged["rationalized_samples"] == 16


def test_reset_to_base_restores_the_original_weights_bit_for_bit(tmp_path, demo_tokenizer, data, monkeypatch):
    monkeypatch.setattr(star_trainer, "generate", answer_generator(demo_tokenizer, solve))  # data to train on
    trainer = make(tmp_path, demo_tokenizer, data, eval_strategy="no")
    original = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    seen = {}
    build = trainer._build_iteration

    def spy(iteration, resumed):
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        build(iteration, resumed)
        if iteration == 1:
            seen["trained"] = before
            seen["reset"] = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
            seen["optimizer_state"] = len(trainer.optimizer.optimizer.state)

    trainer._build_iteration = spy
    trainer.train()
    assert any(not torch.equal(seen["trained"][n], original[n]) for n in original)  # iteration 0 trained
    assert all(torch.equal(seen["reset"][n], original[n]) for n in original)  # and iteration 1 starts from base
    assert seen["optimizer_state"] == 0  # with a fresh optimizer state


def test_without_reset_iterations_continue_from_the_trained_model(tmp_path, demo_tokenizer, data):
    trainer = make(tmp_path, demo_tokenizer, data, eval_strategy="no", reset_model_every_iteration=False)
    trainer.train()
    assert trainer._base_state is None and not os.path.exists(tmp_path / star_trainer.BASE_WEIGHTS_FILE)


def test_preload_generated_skips_generation(tmp_path, demo_tokenizer, data, monkeypatch):
    first = make(tmp_path / "first", demo_tokenizer, data, num_iterations=1, eval_strategy="no")
    first.train()
    calls = []
    original = star_trainer.generate
    monkeypatch.setattr(star_trainer, "generate", lambda *a, **k: calls.append(1) or original(*a, **k))
    path = os.path.join(tmp_path / "first", "iteration_0", "generated.jsonl")
    again = make(tmp_path / "again", demo_tokenizer, data, num_iterations=1, eval_strategy="no",
                 preload_generated=path)
    again.train()
    assert calls == []  # iteration 0 trained on the file
    assert generated(tmp_path / "again", 0) == generated(tmp_path / "first", 0)


def test_a_resume_mid_iteration_continues_with_the_same_data(tmp_path, demo_tokenizer, data, monkeypatch):
    # a solver that is careful on a random half of the prompts: every iteration has data to train on, and
    # the draws come from the generation RNG, which a resume must seed the same way
    coin = lambda prompt: solve(prompt) if torch.rand(()) < 0.5 else "Guess.\nAnswer: 0"  # noqa: E731
    monkeypatch.setattr(star_trainer, "generate", answer_generator(demo_tokenizer, coin))
    common = dict(start_steps=3, eval_strategy="no", save_strategy="steps", save_steps=1, seed=3)
    whole = make(tmp_path / "whole", demo_tokenizer, data, **common)
    whole.train()
    # stop inside iteration 0 (after step 1 of 3), as a killed run would, then resume in a fresh trainer
    part = make(tmp_path / "part", demo_tokenizer, data, **common)
    part.add_callback(StopAt(1))
    part.train()
    resumed = STaRTrainer(AutoModelForCausalLM.from_pretrained(tmp_path / "part" / "checkpoint-1"),
                          star_args(tmp_path / "part", **common), train_dataset=data[0], eval_dataset=data[1],
                          processing_class=demo_tokenizer)
    resumed.train(resume_from_checkpoint=str(tmp_path / "part" / "checkpoint-1"))
    assert resumed.state.global_step == 6
    for iteration in (0, 1):
        assert generated(tmp_path / "part", iteration) == generated(tmp_path / "whole", iteration)
    losses = lambda t: [round(h["loss"], 5) for h in t.state.log_history if "loss" in h]  # noqa: E731
    assert losses(resumed)[1:] == losses(whole)[1:]  # steps 2..6 train on the same batches


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= self.step
        return control


def test_dpo_pairs_reference_logps_and_trl_style_metrics(tmp_path, demo_tokenizer, data, monkeypatch):
    flip = iter(range(10**6))  # right on every other sample: every question has pairs
    monkeypatch.setattr(star_trainer, "generate", answer_generator(
        demo_tokenizer, lambda prompt: solve(prompt) if next(flip) % 2 else "Guess.\nAnswer: 0"))
    trainer = make(tmp_path, demo_tokenizer, data, train_strategy="dpo", samples_per_train_question=4,
                   rpo_alpha=0.5, num_iterations=1, eval_strategy="no", temperature=2.0)
    initial = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    rows = generated(tmp_path, 0)
    compared = [r for r in rows if "ref_logp" in r]
    assert compared and all(r["ref_logp"] < 0 for r in compared)
    # the reference log-prob is the starting model's own: recompute one with a plain forward
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(initial[name])
    r = compared[0]
    prompt = demo_tokenizer(r["prompt"]).input_ids
    completion = demo_tokenizer(r["rationale"], add_special_tokens=False).input_ids + [demo_tokenizer.eos_token_id]
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logps = torch.log_softmax(model.eval()(ids).logits[0, :-1].double(), -1)
    expected = logps[torch.arange(len(prompt) - 1, ids.shape[1] - 1), ids[0, len(prompt):]].sum()
    assert r["ref_logp"] == pytest.approx(float(expected), abs=1e-3)
    logged = [h for h in trainer.state.log_history if "rewards/margins" in h]
    assert logged and {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "dpo_loss", "nll_loss"} <= set(
        ).union(*logged)
    iteration = next(h for h in trainer.state.log_history if "pairs" in h)  # logged once, when the data are built
    assert iteration["pairs"] == len(trainer._data) == len(dpo_pairs(rows)) and iteration["step"] == 0


def test_an_iteration_with_nothing_to_train_on_skips_its_updates_uncounted(tmp_path, demo_tokenizer, data,
                                                                           monkeypatch):
    monkeypatch.setattr(star_trainer, "generate", answer_generator(demo_tokenizer, lambda p: "Answer: 99"))
    trainer = make(tmp_path, demo_tokenizer, data, num_iterations=1, rationalize=False, eval_strategy="no")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    assert trainer.update_guard.skipped_updates == 0


def test_validation_at_iteration_ends_logs_accuracy_and_degeneration(tmp_path, demo_tokenizer, data):
    trainer = make(tmp_path, demo_tokenizer, data, skip_first_validation=False)
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_accuracy" in h]
    assert [h["step"] for h in evals] == [0, 2, 4]  # before training, then at the end of each iteration
    assert all(0.0 <= h["eval_degeneration_rate"] <= 1.0 for h in evals)


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (dict(train_strategy="dpo", samples_per_train_question=1), "samples_per_train_question=1 must be >= 2"),
        (dict(rpo_alpha=0.5), "rpo_alpha=0.5 is a DPO setting"),
        (dict(dpo_beta=0.5), "dpo_beta=0.5 is a DPO setting"),
        (dict(train_strategy="ppo"), "train_strategy='ppo'"),
        (dict(max_steps=7), "max_steps=7: STaR derives it"),
        (dict(train_strategy="dpo", rpo_token_mean=True), "rpo_token_mean=True normalises rpo_alpha's NLL"),
        (dict(rpo_token_mean=True, rpo_alpha=0.5), "is a DPO setting"),
        (dict(step_growth=0.5), "step_growth=0.5"),
    ],
)
def test_config_errors_name_the_field(tmp_path, overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        star_args(tmp_path, **overrides)


def test_max_steps_is_the_schedule_sum(tmp_path):
    config = star_args(tmp_path, num_iterations=3, start_steps=40, step_growth=1.2)
    assert config.schedule == [40, 48, 57] and config.max_steps == 145


def test_every_update_has_all_its_micro_batches_and_uses_distinct_examples(tmp_path, demo_tokenizer, data,
                                                                           monkeypatch):
    """8 questions, batch 3, accumulation 2: Trainer's own loader would give every other update 1 micro-batch."""
    count = iter(range(10**6))  # 16 kept examples, each its own text
    monkeypatch.setattr(star_trainer, "generate",
                        answer_generator(demo_tokenizer, lambda p: f"Sample {next(count)}. {solve(p)}"))
    trainer = make(tmp_path, demo_tokenizer, data, num_iterations=1, start_steps=2, per_device_train_batch_size=3,
                   gradient_accumulation_steps=2, eval_strategy="no", rationalize=False, response_length=24)
    served = []
    objective = trainer.compute_objective

    def spy(model, batch):
        served.append((trainer.state.global_step, demo_tokenizer.batch_decode(batch["input_ids"])))
        return objective(model, batch)

    trainer.compute_objective = spy
    trainer.train()
    assert [step for step, _ in served] == [0, 0, 1, 1]  # 2 micro-batches in each of the 2 updates
    texts = [t for _, batch in served for t in batch]
    assert len(texts) == 12 and len(set(texts)) == 12  # 12 of the 16 kept examples, none twice


def test_a_resume_into_another_directory_takes_the_data_from_the_checkpoint(tmp_path, demo_tokenizer, data):
    common = dict(start_steps=3, eval_strategy="no", save_strategy="steps", save_steps=1, seed=3,
                  train_strategy="dpo", samples_per_train_question=4, temperature=3.0, rationalize=False)
    part = make(tmp_path / "part", demo_tokenizer, data, **common)
    part.add_callback(StopAt(1))
    part.train()
    checkpoint = tmp_path / "part" / "checkpoint-1"
    assert (checkpoint / star_trainer.CHECKPOINT_DATA_FILE).exists()
    resumed = STaRTrainer(AutoModelForCausalLM.from_pretrained(checkpoint), star_args(tmp_path / "elsewhere", **common),
                          train_dataset=data[0], eval_dataset=data[1], processing_class=demo_tokenizer)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert generated(tmp_path / "elsewhere", 1)  # and the resumed iteration's data, for a later resume from here
    assert generated(tmp_path / "elsewhere", 0) == generated(tmp_path / "part", 0)
    # no data anywhere: an error, never a silent regeneration with the mid-iteration model
    (checkpoint / star_trainer.CHECKPOINT_DATA_FILE).unlink()
    lost = STaRTrainer(AutoModelForCausalLM.from_pretrained(checkpoint), star_args(tmp_path / "lost", **common),
                       train_dataset=data[0], eval_dataset=data[1], processing_class=demo_tokenizer)
    with pytest.raises(FileNotFoundError, match="resuming inside a STaR iteration needs its data"):
        lost.train(resume_from_checkpoint=str(checkpoint))


def test_iteration_statistics_are_logged_once_each_whatever_logging_steps(tmp_path, demo_tokenizer, data,
                                                                         monkeypatch):
    monkeypatch.setattr(star_trainer, "generate", answer_generator(demo_tokenizer, solve))
    trainer = make(tmp_path, demo_tokenizer, data, eval_strategy="no", logging_steps=500, rationalize=False)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "kept_samples" in h]
    assert [(h["iteration"], h["kept_samples"], h["step"]) for h in logged] == [(0.0, 16.0, 0), (1.0, 16.0, 2)]


def test_reset_restarts_the_learning_rate_schedule_each_iteration(tmp_path, demo_tokenizer, data, monkeypatch):
    monkeypatch.setattr(star_trainer, "generate", answer_generator(demo_tokenizer, solve))
    trainer = make(tmp_path, demo_tokenizer, data, eval_strategy="no", start_steps=4, lr_scheduler_type="linear",
                   learning_rate=0.04)
    trainer.train()
    rates = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert rates == pytest.approx([0.04, 0.03, 0.02, 0.01] * 2)  # a linear decay per iteration, from the peak


def test_rationalize_needs_questions_and_prompts_built_the_same_way(tmp_path, demo_tokenizer, data):
    custom = data[0].remove_columns(["question"])
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['question'\]"):
        STaRTrainer(model, star_args(tmp_path), train_dataset=custom, processing_class=demo_tokenizer)
    STaRTrainer(model, star_args(tmp_path, rationalize=False), train_dataset=custom, processing_class=demo_tokenizer)
    other = load_task_dataset("arithmetic", "train", demo_tokenizer, dataset_config=CONFIG)  # LaTRO's trigger
    with pytest.raises(ValueError, match="rationalize=True rebuilds each prompt"):
        STaRTrainer(model, star_args(tmp_path), train_dataset=other, processing_class=demo_tokenizer)


def test_generation_and_in_training_evaluation_show_progress_bars(tmp_path, demo_tokenizer, data, capfd):
    """A STaR iteration's sampling and the evaluation inside training each show a bar (not a silent pause);
    disable_tqdm turns them off."""
    trainer = make(tmp_path / "bars", demo_tokenizer, data, num_iterations=1, disable_tqdm=False, rationalize=False)
    trainer.train()
    shown = capfd.readouterr().err
    assert "STaR rationales" in shown and "generating" in shown  # the iteration's samples; its validation
    trainer = make(tmp_path / "quiet", demo_tokenizer, data, num_iterations=1, disable_tqdm=True, rationalize=False)
    trainer.train()
    shown = capfd.readouterr().err
    assert "STaR rationales" not in shown and "generating" not in shown


def test_an_iteration_with_nothing_to_train_on_skips_its_updates_and_the_schedule_goes_on(tmp_path, demo_tokenizer,
                                                                                          data, monkeypatch):
    """No correct sample in iteration 0 (kept_samples 0): its 2 updates leave the weights and the optimizer state
    untouched, yet the shared LR schedule (reset_model_every_iteration=False) advances through them."""
    calls = {"n": 0}
    solver = answer_generator(demo_tokenizer, solve)
    wrong = answer_generator(demo_tokenizer, lambda prompt: "Answer: 99")

    def by_iteration(*args, **kwargs):
        calls["n"] += 1
        return (wrong if calls["n"] == 1 else solver)(*args, **kwargs)

    monkeypatch.setattr(star_trainer, "generate", by_iteration)
    trainer = make(tmp_path, demo_tokenizer, data, eval_strategy="no", rationalize=False, lr_scheduler_type="linear",
                   learning_rate=0.04, reset_model_every_iteration=False)
    start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    seen = {}

    class AfterIterationZero(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            if state.global_step == 2:
                seen["params"] = {n: p.detach().clone() for n, p in model.named_parameters()}
                seen["optimizer_state"] = len(optimizer.state)

    trainer.add_callback(AfterIterationZero())
    trainer.train()
    kept = [h["kept_samples"] for h in trainer.state.log_history if "kept_samples" in h]
    assert kept == [0.0, 16.0]
    assert all(torch.equal(start[n], p) for n, p in seen["params"].items()) and seen["optimizer_state"] == 0
    assert trainer.update_guard.skipped_updates == 0  # nothing to train on is not a non-finite update
    rates = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert rates == pytest.approx([0.04, 0.03, 0.02, 0.01])
    assert not all(torch.equal(start[n], p) for n, p in trainer.model.named_parameters())
