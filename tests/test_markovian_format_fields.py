"""Markovian's `reasoning_prefix` and `answer_marker`: the prompt and the scored answer follow them everywhere
(actor prompt, scoring rows, warm-start rows, evaluation records, the fragility scorer)."""

import datasets
import pytest

from implicit_reasoning.analysis.fragility import answer_logprobs, run_settings
from implicit_reasoning.data.registry import load_task_dataset
from implicit_reasoning.objectives.markovian import ANSWER, ANSWER_MARKER, MARKER, REASONING_PREFIX, MarkovianPrompts
from implicit_reasoning.trainer import MarkovianConfig, MarkovianTrainer

SHARED = dict(instruction="Question:", reasoning_prefix="Let's think step by step.\n", answer_marker=" The answer is")


def _config(tmp_path, **kwargs):
    return MarkovianConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", dataset_name="arithmetic",
                           dataset_config="num_terms=3,max_value=10", **kwargs)


def test_defaults_are_the_papers_format(demo_tokenizer, tmp_path):
    config = _config(tmp_path)
    assert (config.reasoning_prefix, config.answer_marker) == (REASONING_PREFIX, ANSWER_MARKER)
    prompts = MarkovianPrompts(demo_tokenizer, "Add.", True, True)
    assert prompts.text("3 + 4") == "Add. 3 + 4\nReasoning:"
    assert prompts.marker_ids == demo_tokenizer(" Answer:").input_ids


def test_the_fields_give_latros_prompt_and_answer(demo_tokenizer, tmp_path):
    config = _config(tmp_path, **SHARED)
    latro = load_task_dataset("arithmetic", "eval", demo_tokenizer, dataset_config="num_terms=3,max_value=10")[0]
    prompts = MarkovianPrompts(demo_tokenizer, config.instruction, True, True, 64, config.reasoning_prefix,
                               config.answer_marker)
    assert prompts.text(latro["question"]) == latro["queries"]  # "Question: ...\nLet's think step by step.\n"
    assert prompts.text(latro["question"], redact=True) == "Question: <Redacted>\nLet's think step by step.\n"
    rows = prompts.scoring_rows([prompts.scoring_ids(latro["question"])], [demo_tokenizer("3 + 4 = 7.").input_ids],
                                ["12"])
    ids, segments = rows["input_ids"][0], rows["segment_ids"][0]
    assert ids[segments == MARKER].tolist() == demo_tokenizer(" The answer is").input_ids
    assert ids[segments == ANSWER].tolist() == demo_tokenizer(" 12").input_ids


def test_warm_start_rows_and_eval_records_use_the_marker(demo_tokenizer, tiny_llama, tmp_path):
    config = _config(tmp_path, **SHARED, cot_length=4, max_eval_samples=2, per_device_eval_batch_size=2,
                     eval_num_samples=2)
    rows = datasets.Dataset.from_list([{"question": "3 + 4", "rationale": "3 + 4 = 7.", "target": "7"}])
    converted = MarkovianTrainer.sft_rows(config, rows, demo_tokenizer)[0]
    assert converted["queries"] == "Question: 3 + 4\nLet's think step by step.\n"
    assert converted["responses"] == " The answer is 7"
    evaluation = MarkovianTrainer.load_split(config, "eval", demo_tokenizer)
    trainer = MarkovianTrainer(tiny_llama, config, train_dataset=evaluation, eval_dataset=evaluation,
                               processing_class=demo_tokenizer)
    with trainer.generation_model() as model:
        records = trainer.evaluation_records(model, evaluation)
    assert len(records) == 2
    for record in records:
        assert record["completion"].startswith("The answer is")
        assert all(sample.startswith("The answer is") for sample in record["samples"])
    with pytest.raises(ValueError, match="answer_marker"):
        _config(tmp_path, answer_marker="  ").validate()


def test_fragility_reads_the_fields_from_the_run_config(demo_tokenizer, tiny_llama, tmp_path):
    import json

    (tmp_path / "run_config.json").write_text(json.dumps({"trainer": "markovian", **SHARED, "markovian": True}))
    settings = run_settings(str(tmp_path), True)
    assert settings["reasoning_prefix"] == SHARED["reasoning_prefix"]
    assert settings["answer_marker"] == SHARED["answer_marker"]
    rows = [("3 + 4", "3 + 4 = 7.", "7")]
    shared = answer_logprobs(tiny_llama, demo_tokenizer, rows, settings, 4)
    default = answer_logprobs(tiny_llama, demo_tokenizer, rows, {**settings, "reasoning_prefix": REASONING_PREFIX,
                                                                 "answer_marker": ANSWER_MARKER}, 4)
    assert shared != default  # another context: another score


@pytest.mark.parametrize("field", ["reasoning_prefix", "answer_marker"])
def test_a_null_format_field_is_an_error_naming_it(tmp_path, field):
    with pytest.raises(ValueError, match=f"{field}=None: must be a string"):
        _config(tmp_path, **{field: None})
