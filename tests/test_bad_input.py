"""Bad input: every error names the file, split, row or column (or the field / directory), before anything is
trained or written, and an earlier run in output_dir is left byte for byte as it was.

Empty strings, gold answers the checker cannot parse, non-Latin text, over-long prompts (left-truncated with a
warning), a local file in the wrong format, a dataset missing a column, a model directory without tokenizer files,
a YAML with an unknown key, a user reward function returning something that is not a float, a file that is not
UTF-8, an empty file, a local path that does not exist, a single file serving every split (a warning).
"""

import hashlib
import json
import re
import shutil
import warnings

import pytest
import torch

from implicit_reasoning.data.registry import load_task_dataset
from implicit_reasoning.evaluation.checkers import is_correct
from implicit_reasoning.objectives.rewards import call_rewards
from implicit_reasoning.pipeline import parse_training_args, run_training
from implicit_reasoning.runtime import models as model_utils
from implicit_reasoning.trainer import (
    LatroConfig, LatroTrainer, MarkovianConfig, MarkovianTrainer, PPOCurriculumConfig, PPOCurriculumTrainer,
    SFTBaselineConfig, SFTBaselineTrainer, STaRConfig, STaRTrainer,
)

from conftest import addition_rows

CONFIGS = {"latro": (LatroTrainer, LatroConfig), "markovian": (MarkovianTrainer, MarkovianConfig),
           "star": (STaRTrainer, STaRConfig), "ppo_curriculum": (PPOCurriculumTrainer, PPOCurriculumConfig),
           "sft": (SFTBaselineTrainer, SFTBaselineConfig)}
QUICK = dict(report_to="none", disable_tqdm=True, use_cpu=True)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def _load(name, path, tokenizer, tmp_path):
    trainer_cls, config_cls = CONFIGS[name]
    config = config_cls(output_dir=str(tmp_path / "out"), dataset_name=str(path), **QUICK)
    return trainer_cls.load_split(config, "train", tokenizer)


# ------------------------------------------------------------------------------------------ rows
BAD_ROWS = [  # (row 2 replaced by, column named, what the message says: a regex)
    ({"queries": ""}, "queries", "an empty string"),
    ({"queries": "   \n"}, "queries", "an empty string"),
    ({"groundtruth": None}, "groundtruth", r"(missing \(null\)|the gold answer is empty)"),
    ({"groundtruth": "Paris"}, "groundtruth", "gold answer 'Paris' is not one number, which the numeric checker compares"),
    ({"groundtruth": "四十二"}, "groundtruth", "gold answer '四十二' is not one number"),
    ({"groundtruth": "3 or 4"}, "groundtruth", "gold answer '3 or 4' is not one number"),
]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("change,column,problem", BAD_ROWS)
def test_a_bad_row_of_a_custom_file_names_file_split_row_and_column(tmp_path, demo_tokenizer, name, change, column,
                                                                     problem):
    rows = addition_rows(6)
    rows[2] = {**rows[2], **change}
    if name == "markovian":  # Markovian builds its prompt around a `question` column (finished queries: an error)
        rows = [{("question" if k == "queries" else k): v for k, v in row.items()} for row in rows]
        column = "question" if column == "queries" else column
    path = _write_jsonl(tmp_path / "mine.jsonl", rows)
    expected = rf"dataset '{re.escape(str(path))}' split 'train' row 2 column '{column}': {problem}"
    with pytest.raises(ValueError, match=expected):
        _load(name, path, demo_tokenizer, tmp_path)


@pytest.mark.parametrize("name", ["latro", "star", "ppo_curriculum", "sft"])  # Markovian reads no `responses`
def test_an_empty_gold_response_is_named(tmp_path, demo_tokenizer, name):
    rows = addition_rows(6)
    rows[4]["responses"] = ""
    path = _write_jsonl(tmp_path / "mine.jsonl", rows)
    with pytest.raises(ValueError, match=r"split 'train' row 4 column 'responses': an empty string"):
        _load(name, path, demo_tokenizer, tmp_path)


def test_a_registry_row_with_an_empty_question_names_dataset_split_and_row(tmp_path, demo_tokenizer):
    rows = [{"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"}, {"question": " ", "answer": "#### 3"}]
    path = _write_jsonl(tmp_path / "test.jsonl", rows)
    config = LatroConfig(output_dir=str(tmp_path / "out"), dataset_name="gsm8k", dataset_path=str(path), **QUICK)
    with pytest.raises(ValueError, match=r"dataset 'gsm8k' split 'eval' row 1: the question is an empty string"):
        LatroTrainer.load_split(config, "eval", demo_tokenizer)


def test_non_latin_text_loads_unchanged_scores_and_trains(tmp_path, demo_tokenizer):
    texts = ["问题：三加四等于几？\n让我们一步一步地思考。\n", "سؤال: كم يساوي ٣ + ٤؟\n", "प्रश्न: तीन और चार?\n",
             "Ìbéèrè: mẹ́ta àti mẹ́rin?\n"]
    golds = ["7", "٧", "7", "7"]  # Arabic-Indic digits are a number too
    rows = [{"queries": q, "responses": f" 答案是 {g}。" if i == 0 else f" The answer is {g}.", "groundtruth": g}
            for i, (q, g) in enumerate(zip(texts, golds))] * 2
    path = _write_jsonl(tmp_path / "multilingual.jsonl", rows)
    dataset = _load("latro", path, demo_tokenizer, tmp_path)
    assert dataset["queries"] == [r["queries"] for r in rows] and dataset["groundtruth"] == [r["groundtruth"] for r in rows]
    assert is_correct(str(path), "... The answer is 7.", "٧") and not is_correct(str(path), "The answer is 8", "٧")
    config = LatroConfig(output_dir=str(tmp_path / "out"), rloo_k=2, per_device_train_batch_size=2, response_length=4,
                         max_steps=1, save_strategy="no", dataset_name=str(path), **QUICK)
    from implicit_reasoning.demo import build_demo_model

    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    trainer = LatroTrainer(model, config, train_dataset=dataset, processing_class=demo_tokenizer)
    trainer.train()
    assert trainer.state.global_step == 1 and trainer.update_guard.skipped_updates == 0


# ------------------------------------------------------------------------------------------ files
@pytest.mark.parametrize("file,content,pattern", [
    ("broken.jsonl", '{"queries": "a", "responses": "b", "groundtruth": "1"}\nnot json\n', "is not valid jsonl"),
    ("table.json", "queries,responses,groundtruth\na,b,1\n", "is not valid json"),
    ("rows.parquet", "queries,responses,groundtruth\n", "is not valid parquet"),
    ("notes.txt", "queries responses groundtruth\n", "unsupported file type 'notes.txt'"),
])
def test_a_local_file_in_the_wrong_format_names_the_file(tmp_path, demo_tokenizer, file, content, pattern):
    path = tmp_path / file
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(file) + ".*" + re.escape(pattern)):
        _load("latro", path, demo_tokenizer, tmp_path)


@pytest.mark.parametrize("suffix, row, line", [(".jsonl", 2, 3), (".csv", 2, 4), (".json", None, 4)])
def test_a_file_that_is_not_utf8_names_the_file_split_row_and_line(tmp_path, demo_tokenizer, suffix, row, line):
    rows = addition_rows(4)
    rows[2]["queries"] = "Question: café 1 + 2\n"
    path = tmp_path / f"latin1{suffix}"
    if suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    elif suffix == ".csv":
        text = "queries,responses,groundtruth\n" + "".join(
            f"{json.dumps(r['queries'].strip(), ensure_ascii=False)},{r['responses']},{r['groundtruth']}\n" for r in rows)
    else:
        text = "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n"
    path.write_bytes(text.encode("latin-1"))
    where = f"row {row} \\(line {line}\\)" if row is not None else f"line {line}"
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}' is not UTF-8 text: {where} has byte 0xe9"):
        _load("latro", path, demo_tokenizer, tmp_path)
    with pytest.raises(ValueError, match=r"split 'eval'.*not UTF-8"):  # named for whichever split reads it
        load_task_dataset(str(path), "eval", demo_tokenizer)


@pytest.mark.parametrize("content", ["", "\n\n", "queries,responses,groundtruth\n"])
def test_an_empty_file_is_named_not_a_parser_error(tmp_path, demo_tokenizer, content):
    path = tmp_path / ("empty.csv" if content.startswith("queries") else "empty.jsonl")
    path.write_text(content)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}' has no rows$"):
        _load("latro", path, demo_tokenizer, tmp_path)


def test_a_missing_local_path_is_named_as_missing(tmp_path, demo_tokenizer, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flags = ["--trainer", "latro", "--output_dir", str(tmp_path / "out"), "--report_to", "none", "--use_cpu"]
    for field, value, other in (("dataset_name", "./nope.jsonl", ["--model_name_or_path", str(tiny_model_dir)]),
                                ("dataset_name", "data/train.csv", ["--model_name_or_path", str(tiny_model_dir)]),
                                ("model_name_or_path", "./no_such_model", ["--dataset_name", "arithmetic"])):
        with pytest.raises(ValueError, match=rf"{field}='{re.escape(value)}': no such file or directory \(looked "
                                             rf"for '{re.escape(str(tmp_path / value.lstrip('./')))}'"):
            run_training(*parse_training_args([*flags, f"--{field}", value, *other]))
    with pytest.raises(ValueError, match="unknown dataset 'gsm9k'"):  # a registry name is still one
        load_task_dataset("gsm9k", "train", demo_tokenizer)


def test_the_demo_names_a_missing_data_file(tmp_path, monkeypatch):
    """Not `text_column` (the PPO demo's mixture), a field the user never set."""
    from implicit_reasoning.demo.jobs import check_demo_inputs

    monkeypatch.chdir(tmp_path)
    for demo in ("demo_ppo_curriculum", "demo_latro"):
        name, config = parse_training_args([demo, "--output_dir", str(tmp_path / demo), "--dataset_name", "nope.jsonl"])
        with pytest.raises(ValueError, match="'nope.jsonl': no such file or directory") as caught:
            check_demo_inputs(name, config)
        assert "text_column" not in str(caught.value)


def test_a_single_file_serving_every_split_warns_once(tmp_path, demo_tokenizer):
    path = _write_jsonl(tmp_path / "all.jsonl", addition_rows(8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_task_dataset(str(path), "train", demo_tokenizer)
        for split in ("eval", "test", "eval"):
            load_task_dataset(str(path), split, demo_tokenizer)
    named = [str(w.message) for w in caught if "serves every split" in str(w.message)]
    assert len(named) == 1 and "training accuracy, not held-out accuracy" in named[0] and str(path) in named[0]
    folder = tmp_path / "split"  # train.* and eval.* files: held out, no warning
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", addition_rows(8))
    _write_jsonl(folder / "eval.jsonl", addition_rows(4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(load_task_dataset(str(folder), "eval", demo_tokenizer)) == 4
    assert not [w for w in caught if "serves every split" in str(w.message)]


@pytest.mark.parametrize("name", CONFIGS)
def test_a_file_missing_a_column_names_file_split_and_column(tmp_path, demo_tokenizer, name):
    rows = [{k: v for k, v in row.items() if k != "groundtruth"} for row in addition_rows(4)]
    path = _write_jsonl(tmp_path / "mine.jsonl", rows)
    with pytest.raises(ValueError, match=rf"'{re.escape(str(path))}' split 'train' is missing column\(s\) "
                                         r"\['groundtruth'\]; columns present: \['queries', 'responses'\]"):
        _load(name, path, demo_tokenizer, tmp_path)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("split", ["train", "eval"])
def test_an_in_memory_dataset_missing_a_column_names_the_trainer_split_and_columns(tmp_path, demo_tokenizer, name,
                                                                                    split):
    from datasets import Dataset

    from implicit_reasoning.demo import build_demo_model

    trainer_cls, config_cls = CONFIGS[name]
    config = config_cls(output_dir=str(tmp_path / "out"), **QUICK)
    needed = trainer_cls.columns_needed(config) if split == "train" else trainer_cls.eval_columns_needed(config)
    rows = Dataset.from_list([{"text": "x"}])
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    with pytest.raises(ValueError, match=rf"{trainer_cls.__name__}: {split} dataset is missing column\(s\) "
                                         rf"{re.escape(str(list(needed)))}; it has \['text'\]"):
        trainer_cls(model, config, processing_class=demo_tokenizer, **{f"{split}_dataset": rows})


# ------------------------------------------------------------------------------------------ prompts
def test_an_over_long_prompt_is_left_truncated_with_one_warning(tmp_path, demo_tokenizer):
    tokenizer = model_utils.prepare_tokenizer(demo_tokenizer)
    text = "Question: 1 + 2 + 3 + 4 + 5 + 6\nLet's think step by step.\n"
    ids = tokenizer(text).input_ids
    with pytest.warns(UserWarning, match=rf"a prompt of {len(ids)} tokens is longer than max_prompt_length=8: it is "
                                         rf"left-truncated \(its first {len(ids) - 8} tokens"):
        assert model_utils.encode_prompt(tokenizer, text, 8) == ids[-8:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per tokenizer: a long data set is not one warning per prompt
        assert model_utils.encode_prompt(tokenizer, text, 8) == ids[-8:]
        assert model_utils.encode_prompt(demo_tokenizer, text, 100) == ids  # short enough: silent
    # in a trainer: its own tokenizer copy warns once, and the update trains on the kept end of the prompt
    config = LatroConfig(output_dir=str(tmp_path / "out"), rloo_k=2, per_device_train_batch_size=2, response_length=4,
                         max_steps=1, save_strategy="no", max_prompt_length=6, **QUICK)
    from datasets import Dataset

    from implicit_reasoning.demo import build_demo_model

    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    trainer = LatroTrainer(model, config, train_dataset=Dataset.from_list(addition_rows(4)),
                           processing_class=demo_tokenizer)
    with pytest.warns(UserWarning, match="max_prompt_length=6: it is left-truncated") as caught:
        trainer.train()
    assert sum("max_prompt_length=6" in str(w.message) for w in caught) == 1


# ------------------------------------------------------------------------------------------ models and configs
@pytest.fixture(scope="module")
def weights_only_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model's weights and config without its tokenizer files."""
    path = tmp_path_factory.mktemp("weights_only")
    for file in tiny_model_dir.iterdir():
        if file.name in ("config.json", "generation_config.json", "model.safetensors"):
            shutil.copy(file, path / file.name)
    return path


def test_a_model_directory_without_tokenizer_files_names_it_and_the_field(tmp_path, weights_only_dir, tiny_model_dir):
    expected = rf"model directory '{re.escape(str(weights_only_dir))}' has no tokenizer files .*tokenizer_name_or_path"
    config = LatroConfig(output_dir=str(tmp_path / "out"), model_name_or_path=str(weights_only_dir),
                         dataset_name="arithmetic", **QUICK)
    with pytest.raises(ValueError, match=expected):
        run_training("latro", config)
    with pytest.raises(ValueError, match=expected):  # the Python API with a path: the same message
        LatroTrainer(str(weights_only_dir), config)
    assert not (tmp_path / "out").exists()
    # the fix the message names
    config = LatroConfig(output_dir=str(tmp_path / "out"), model_name_or_path=str(weights_only_dir),
                         tokenizer_name_or_path=str(tiny_model_dir), dataset_name="arithmetic", **QUICK)
    assert LatroTrainer(str(weights_only_dir), config).processing_class.pad_token is not None


@pytest.mark.parametrize("trainer,key,closest", [
    ("latro", "learning_rat", "learning_rate"), ("ppo_curriculum", "reward_func", "reward_funcs"),
    ("star", "num_iteration", "num_iterations"), ("sft", "max_prompt_len", "max_prompt_length"),
    ("markovian", "cot_lenght", "cot_length"),
])
def test_a_yaml_with_an_unknown_key_names_it_and_the_closest_field(tmp_path, trainer, key, closest):
    path = tmp_path / "run.yaml"
    path.write_text(f"trainer: {trainer}\noutput_dir: {tmp_path / 'out'}\n{key}: 1\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: unknown key '{key}' for \w+Config; "
                                         rf"did you mean '{closest}'\?"):
        parse_training_args([str(path)])


def test_a_key_of_another_trainer_names_that_trainer(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"trainer: latro\noutput_dir: {tmp_path / 'out'}\ncot_length: 3\n")
    named = r"unknown key .cot_length. for LatroConfig; it is a field of trainer markovian \(set `trainer:` to use it\)"
    with pytest.raises(ValueError, match=named):
        parse_training_args([str(path)])


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "list"), ("hello\n", "str")])
def test_a_yaml_that_is_not_a_mapping_names_the_file(tmp_path, text, kind):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: a training YAML is a mapping .* not a {kind}"):
        parse_training_args([str(path)])


# ------------------------------------------------------------------------------------------ reward functions
@pytest.mark.parametrize("returned,pattern", [
    (lambda n: ["high"] * n, r"reward function 'mine' returned 'high' for completion 0: expected a float"),
    (lambda n: 1.0, r"reward function 'mine' returned float 1.0: it must return a list of 2 floats"),
    (lambda n: [1.0], r"reward function 'mine' returned 1 values for 2 completions"),
])
def test_a_reward_function_returning_no_floats_is_named(returned, pattern):
    def mine(prompts, completions, **kwargs):
        return returned(len(completions))

    with pytest.raises(ValueError, match=pattern):
        call_rewards([mine], ["mine"], ["p", "q"], ["a", "b"], [[1], [2]], {})
    values, applicable = call_rewards([lambda **k: [torch.tensor(0.5), None]], ["t"], ["p", "q"], ["a", "b"],
                                      [[1], [2]], {})
    assert values.tolist() == [[0.5, 0.0]] and applicable.tolist() == [[True, False]]


# ------------------------------------------------------------------------------------------ nothing lost
def _files(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def earlier_run(tiny_model_dir, tmp_path_factory):
    """An output_dir holding a finished run: checkpoint-1, the final model, run_config.json."""
    out = tmp_path_factory.mktemp("earlier") / "out"
    config = LatroConfig(output_dir=str(out), model_name_or_path=str(tiny_model_dir), dataset_name="arithmetic",
                         dataset_config="num_terms=2,max_value=5,num_examples=8", rloo_k=2, max_steps=1,
                         per_device_train_batch_size=2, response_length=4, save_strategy="steps", save_steps=1,
                         eval_strategy="no", **QUICK)
    run_training("latro", config)
    return out


@pytest.mark.parametrize("bad", ["empty_prompt", "unparseable_gold", "wrong_format", "missing_column",
                                 "no_tokenizer", "unknown_yaml_key", "too_few_prompts", "a_fresh_run"])
def test_bad_input_leaves_an_earlier_run_in_output_dir_untouched(tmp_path, earlier_run, tiny_model_dir,
                                                                   weights_only_dir, bad):
    out = tmp_path / "out"
    shutil.copytree(earlier_run, out)
    before = _files(out)
    assert "checkpoint-1/checkpoint_complete.json" in before and "run_config.json" in before
    rows = addition_rows(4)
    data = tmp_path / "data.jsonl"
    if bad == "empty_prompt":
        rows[1]["queries"] = ""
    elif bad == "unparseable_gold":
        rows[3]["groundtruth"] = "seven"
    elif bad == "missing_column":
        rows = [{k: v for k, v in row.items() if k != "responses"} for row in rows]
    _write_jsonl(data, rows)
    if bad == "wrong_format":
        data.write_text("queries,responses,groundtruth\n")
    model = weights_only_dir if bad == "no_tokenizer" else tiny_model_dir
    flags = ["--trainer", "latro", "--output_dir", str(out), "--model_name_or_path", str(model),
             "--dataset_name", str(data), "--max_steps", "2", "--save_steps", "1", "--rloo_k", "2",
             "--per_device_train_batch_size", "2", "--response_length", "4", "--report_to", "none", "--use_cpu"]
    if bad == "too_few_prompts":  # 8 samples, 2 per prompt: one update needs 4 prompts; the file has 3
        _write_jsonl(data, rows[:3])
        flags += ["--per_device_train_batch_size", "8", "--learning_rate", "0.5"]
    named = {"no_tokenizer": re.escape(str(weights_only_dir)), "unknown_yaml_key": "unknown key 'save_step'.*'save_steps'",
             "too_few_prompts": "has 3 prompts, fewer than one update needs",
             "a_fresh_run": "holds an earlier run .*checkpoint-1.*run_config.json.*resume_from_checkpoint=True.*"
                            "overwrite_output_dir=True"}
    with pytest.raises(ValueError, match=named.get(bad, re.escape(str(data)))):
        if bad == "unknown_yaml_key":
            (tmp_path / "run.yaml").write_text("learning_rate: 0.001\nsave_step: 1\n")
            parse_training_args([str(tmp_path / "run.yaml"), *flags])
        else:
            run_training(*parse_training_args(flags))
    assert _files(out) == before


def test_a_run_that_fails_its_checks_writes_no_file(tmp_path, tiny_model_dir, monkeypatch):
    """The checks come before the first write (the job runner, and the demo before its warm start)."""
    from implicit_reasoning.demo import jobs

    data = _write_jsonl(tmp_path / "small.jsonl", addition_rows(3))
    flags = ["--trainer", "latro", "--dataset_name", str(data), "--rloo_k", "2", "--per_device_train_batch_size",
             "8", "--response_length", "4", "--report_to", "none", "--use_cpu", "--learning_rate", "0.5"]
    with pytest.raises(ValueError, match="fewer than one update needs"):
        run_training(*parse_training_args([*flags, "--output_dir", str(tmp_path / "out"),
                                           "--model_name_or_path", str(tiny_model_dir)]))
    monkeypatch.setitem(jobs.DEMO_WARM_START, "max_steps", 2)  # the old order trained the warm start first
    with pytest.raises(ValueError, match="fewer than one update needs"):
        jobs.run_demo(*parse_training_args([*flags, "--output_dir", str(tmp_path / "demo")]))
    # Trainer's __init__ makes the (empty) output_dir; not one file is written
    assert [p.name for p in tmp_path.rglob("*") if not p.is_dir()] == ["small.jsonl"]
