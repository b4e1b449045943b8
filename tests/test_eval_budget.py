"""One evaluation budget rule for every trainer, cut-off completions counted and not scored by their last number,
greedy evaluation by default in the evaluation command, and trainer fields settable from it (issue 20, defects
4, 6 and 7)."""

import json

import datasets
import pytest
import torch

from implicit_reasoning import evaluate as ev
from implicit_reasoning.evaluate import EvaluationArguments, _eval_config, run_evaluation
from implicit_reasoning.evaluation import accuracy as evaluation
from implicit_reasoning.runtime.models import prepare_tokenizer
from implicit_reasoning.trainer import (
    LatroConfig,
    LatroTrainer,
    MarkovianConfig,
    MarkovianTrainer,
    PPOCurriculumConfig,
    SFTBaselineConfig,
    STaRConfig,
)
from implicit_reasoning.trainer.markovian import trainer as markovian_trainer

COMMON = dict(report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True)


def _fake_generate(rows_by_prompt_count):
    """A `generate` that returns the given token rows (right-padded to the budget) and records its configs."""
    calls = []

    def generate(model, prompts, config, batch_size, *args, **kwargs):
        calls.append(config)
        rows = rows_by_prompt_count(len(prompts))
        out = torch.full((len(prompts), config.max_new_tokens), config.pad_token_id, dtype=torch.long)
        for i, row in enumerate(rows):
            row = row[: config.max_new_tokens]
            out[i, : len(row)] = torch.tensor(row)
        return out

    return generate, calls


def _rows(tok, texts):
    return datasets.Dataset.from_dict({"queries": [f"Question {i}" for i in range(len(texts))],
                                       "groundtruth": ["7"] * len(texts)})


def test_a_cut_off_completion_is_counted_and_not_scored_by_its_last_number(monkeypatch, demo_tokenizer, tmp_path):
    tok = prepare_tokenizer(demo_tokenizer)
    finished = tok("The answer is 7.", add_special_tokens=False).input_ids + [tok.eos_token_id]
    cut = tok("3 + 4 = 7 and 7 + 1 = 8 so 7", add_special_tokens=False).input_ids  # ran out of tokens, ends in "7"
    stated = tok("The answer is 7 because 3 + 4 = 7 and", add_special_tokens=False).input_ids
    filler = tok(" and", add_special_tokens=False).input_ids
    budget = max(len(cut), len(finished))
    cut = filler * (budget - len(cut)) + cut  # exactly the budget, no end-of-text token, ending in "7"
    stated = (stated + filler * budget)[:budget]
    fake, _ = _fake_generate(lambda n: [finished, cut, stated][:n])
    monkeypatch.setattr(evaluation, "generate", fake)
    rows = _rows(tok, ["a", "b", "c"])
    args = SFTBaselineConfig(output_dir=str(tmp_path), eval_max_new_tokens=budget, **COMMON)
    records = evaluation.evaluate_dataset(None, tok, rows, "arithmetic", args)
    assert [r["cut_off"] for r in records] == [False, True, True]
    # the cut-off row that states no answer is not read by its last number; one that states it is scored
    assert [r["correct"] for r in records] == [True, False, True] and records[1]["prediction"] is None
    summary = evaluation.summarize_records(records)
    assert summary["cut_off_rate"] == pytest.approx(2 / 3) and summary["accuracy"] == pytest.approx(2 / 3)
    fallback = SFTBaselineConfig(output_dir=str(tmp_path), eval_max_new_tokens=budget, eval_cut_off_fallback=True,
                                 **COMMON)
    records = evaluation.evaluate_dataset(None, tok, rows, "arithmetic", fallback)
    assert [r["correct"] for r in records] == [True, True, True]  # asked for: the last number of the cut-off row


def test_every_trainer_evaluates_with_the_same_budget_rule():
    # the reasoning budget of training + EVAL_ANSWER_TOKENS (32) for the answer, unless eval_max_new_tokens is set
    for config_cls in (LatroConfig, SFTBaselineConfig, STaRConfig, PPOCurriculumConfig):
        assert config_cls(output_dir="x", response_length=40, **COMMON).eval_budget == 72, config_cls.__name__
        assert config_cls(output_dir="x", response_length=40, eval_max_new_tokens=9, **COMMON).eval_budget == 9


def test_the_markovian_critic_answers_within_the_same_answer_budget(monkeypatch, demo_tokenizer, tiny_llama, tmp_path):
    tok = prepare_tokenizer(demo_tokenizer)
    fake, calls = _fake_generate(lambda n: [tok(" 7", add_special_tokens=False).input_ids + [tok.eos_token_id]] * n)
    monkeypatch.setattr(markovian_trainer, "generate", fake)
    data = datasets.Dataset.from_dict({"question": ["3 + 4", "1 + 6"], "answer": ["7", "7"]})
    config = MarkovianConfig(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=2, cot_length=5, **COMMON)
    trainer = MarkovianTrainer(tiny_llama, config, eval_dataset=data, processing_class=tok)
    records = trainer.evaluation_records(trainer.model, data)
    assert [c.max_new_tokens for c in calls] == [5, 32]  # the CoT (cot_length), then the answer (32)
    assert all(r["correct"] and r["cut_off"] is False for r in records)


def test_training_time_evaluation_logs_the_cut_off_rate(tmp_path, tiny_llama, demo_tokenizer, addition_dataset):
    config = LatroConfig(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=2, response_length=3,
                         max_eval_samples=4, dataset_name="arithmetic", **COMMON)
    trainer = LatroTrainer(tiny_llama, config, eval_dataset=addition_dataset, processing_class=demo_tokenizer)
    metrics = trainer.evaluate()
    assert 0 <= metrics["eval_cut_off_rate"] <= 1 and metrics["eval_num_questions"] == 4


# ----------------------------------------------------------------- the evaluation command
def test_the_evaluation_command_is_greedy_unless_maj_at_k_is_asked_for(tmp_path):
    assert EvaluationArguments(model_name_or_path="m").eval_num_samples == 1
    run = {"trainer": "latro", "dataset_name": "arithmetic", "eval_num_samples": 8}
    config = _eval_config(LatroConfig, run, EvaluationArguments(model_name_or_path="m"), str(tmp_path))
    assert config.eval_num_samples == 1
    config = _eval_config(LatroConfig, run, EvaluationArguments(model_name_or_path="m", eval_num_samples=4),
                          str(tmp_path))
    assert config.eval_num_samples == 4


def test_the_evaluation_command_sets_any_field_of_the_trainer(tmp_path):
    flags = ev.trainer_flags(MarkovianConfig, ["--cot_length", "7", "--instruction", "Think.", "--markovian", "false"])
    assert flags == {"cot_length": 7, "instruction": "Think.", "markovian": False}
    run = {"trainer": "markovian", "dataset_name": "arithmetic", "cot_length": 50}
    config = _eval_config(MarkovianConfig, run, EvaluationArguments(model_name_or_path="m"), str(tmp_path), flags)
    assert (config.cot_length, config.instruction, config.markovian) == (7, "Think.", False)
    with pytest.raises(ValueError, match="--cot_lenght: the markovian trainer has no such setting"):
        ev.trainer_flags(MarkovianConfig, ["--cot_lenght", "7"], "markovian")


def test_a_base_model_evaluates_as_markovian_with_its_own_cot_length(tmp_path, tiny_model_dir):
    """No run_config.json: --trainer markovian, the Markovian fields as flags, the base model is its own critic."""
    from implicit_reasoning.cli import evaluate

    out = tmp_path / "eval"
    evaluate(["--model_name_or_path", str(tiny_model_dir), "--trainer", "markovian", "--dataset_name", "arithmetic",
              "--dataset_config", "num_terms=2,max_value=5,num_examples=3", "--cot_length", "3",
              "--instruction", "Add the numbers.", "--output_dir", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert summary["trainer"] == "markovian" and summary["num_questions"] == 3 and "cut_off_rate" in summary
    assert "maj@" not in " ".join(summary) and all("query" in r and "rationale" in r for r in records)
    from implicit_reasoning.runtime.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    assert all(len(tok(r["rationale"], add_special_tokens=False).input_ids) <= 3 for r in records)


def test_run_evaluation_takes_trainer_fields_from_python(tmp_path, tiny_model_dir):
    summary = run_evaluation(
        EvaluationArguments(model_name_or_path=str(tiny_model_dir), trainer="markovian", dataset_name="arithmetic",
                            dataset_config="num_terms=2,max_value=5,num_examples=2", output_dir=str(tmp_path)),
        overrides={"cot_length": 2},
    )
    assert summary["num_questions"] == 2


@pytest.mark.parametrize("fallback", [False, True])
def test_maj_at_k_records_say_which_samples_were_cut_off_whatever_the_reading(fallback):
    """`sample_cut_off` is the samples' real cut-off; `eval_cut_off_fallback` changes only how they are read (it
    recorded the strict-reading flag, so with the fallback every cut-off sample showed False)."""
    from implicit_reasoning.evaluation.accuracy import _record

    samples = ["so 3 + 4 = 7 and then", "The answer is 7.", "The answer is 6."]
    record = _record("arithmetic", 0, "q", "7", "The answer is 7.", False, samples, [True, False, False], fallback)
    assert record["sample_cut_off"] == [True, False, False]
    assert record["sample_predictions"] == ["7" if fallback else None, "7", "6"]
