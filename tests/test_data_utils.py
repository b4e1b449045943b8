"""Tests for the dataset registry (implicit_reasoning.data.registry); no network."""

import json
import re
from pathlib import Path

import datasets
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from implicit_reasoning.data import registry as du
from implicit_reasoning.data.prompts import format_prompt, question_text
from implicit_reasoning.data.sources import arithmetic_example

FIXTURES = Path(__file__).parent / "fixtures"
TERM_RE = re.compile(r"\(-\d+\)|\d+")


def _fixture(name):
    return str(FIXTURES / name)


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _term_value(term):
    return -int(term[2:-1]) if term.startswith("(-") else int(term)


def _tokenizer(chat_template=None):
    vocab = {"[UNK]": 0, "[PAD]": 1, "question": 2}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")
    tok.chat_template = chat_template
    return tok


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


# --------------------------------------------------------------------------- registry


def test_registry_names_and_checkers():
    expected = {"gsm8k": "numeric", "math": "math", "arc_challenge": "multiple_choice",
                "mmlu": "multiple_choice", "mmmlu": "multiple_choice", "wikitext": "none",
                "arithmetic": "numeric", "arithmetic_negative": "numeric"}
    assert set(expected) <= set(du.list_datasets())
    for name, checker in expected.items():
        assert du.get_dataset_spec(name).checker == checker


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ValueError, match="gsm8kk.*gsm8k"):
        du.get_dataset_spec("gsm8kk")


def test_unknown_split_is_an_error():
    with pytest.raises(ValueError, match="validation"):
        du.load_examples("gsm8k", "validation", dataset_path=_fixture("gsm8k"))


def test_register_duplicate_needs_overwrite():
    with pytest.raises(ValueError, match="already registered"):
        du.register_dataset(du.get_dataset_spec("gsm8k"))


def test_register_new_dataset_and_load_from_local(tmp_path):
    spec = du.DatasetSpec(
        name="toy_qa_for_tests", hub_path="someone/toy", hub_config=None,
        splits={"train": "train", "eval": "train", "test": "train"}, required_columns=("q", "a"),
        to_example=lambda row: {"question": row["q"], "rationale": "", "answer": row["a"]}, checker="numeric",
    )
    du.register_dataset(spec, overwrite=True)
    _write_jsonl(tmp_path / "train.jsonl", [{"q": "1+1?", "a": "2"}])
    ds = du.load_examples("toy_qa_for_tests", "eval", dataset_path=str(tmp_path))
    assert ds[0] == {"question": "1+1?", "rationale": "", "answer": "2"}


def test_hub_loading_calls_load_dataset_with_spec(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return datasets.Dataset.from_list([{"question": "q", "answer": "x\n#### 3"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ds = du.load_examples("gsm8k", "eval")
    assert calls == [("openai/gsm8k", "main", "test")] and ds[0]["answer"] == "3"
    du.load_raw_dataset("gsm8k", "train", dataset_config="socratic")
    assert calls[-1] == ("openai/gsm8k", "socratic", "train")


def test_math_all_config_concatenates_subjects(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append(name)
        row = {"problem": name, "level": "Level 1", "type": name, "solution": "$\\boxed{1}$"}
        return datasets.Dataset.from_list([row])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert len(du.load_raw_dataset("math", "train")) == 7 and "algebra" in calls
    calls.clear()
    assert len(du.load_raw_dataset("math", "train", dataset_config="geometry")) == 1
    assert calls == ["geometry"]


# --------------------------------------------------------------------------- gold extraction


def test_gsm8k_gold_and_rationale():
    ds = du.load_examples("gsm8k", "train", dataset_path=_fixture("gsm8k"))
    assert ds["answer"] == ["255", "1285", "22"]  # "#### 1,285" -> commas removed
    rationale = ds[0]["rationale"]
    assert "<<" not in rationale and "####" not in rationale
    assert rationale.startswith("The muffins brought in 45 * 3 = $135.")
    assert du.load_examples("gsm8k", "test", dataset_path=_fixture("gsm8k"))["answer"] == ["48", "130", "1500"]


def test_math_gold_last_boxed_nested():
    train = du.load_examples("math", "train", dataset_path=_fixture("math"))
    assert train["answer"] == ["14", "6", "\\frac{1}{4}"]
    test = du.load_examples("math", "test", dataset_path=_fixture("math"))
    assert test["answer"] == ["5", "\\frac{1}{2}", "(-\\infty, 2]"]
    assert test[1]["rationale"].endswith("\\boxed{\\frac{1}{2}}$.")


@pytest.mark.parametrize("text, expected", [
    ("\\boxed{1} then \\boxed{\\frac{a}{\\sqrt{b}}}", "\\frac{a}{\\sqrt{b}}"),
    ("so \\boxed 7$.", "7"),
    ("\\fbox{x+1}", "x+1"),
    ("no box here", None),
    ("\\boxed{\\frac{1}{2}", None),
])
def test_last_boxed_content(text, expected):
    assert du.last_boxed_content(text) == expected


def test_arc_letters_numeric_labels_and_five_choices():
    ds = du.load_examples("arc_challenge", "test", dataset_path=_fixture("arc_challenge"))
    assert ds["answer"] == ["C", "C", "D"]
    numeric = ds[1]["question"]  # labels 1-4 shown and scored as letters
    assert "(A) radiation" in numeric and "(C) conduction" in numeric and "(1)" not in numeric
    assert "(E) excretory system" in ds[2]["question"]
    train = du.load_examples("arc_challenge", "train", dataset_path=_fixture("arc_challenge"))
    assert train["answer"] == ["A", "C", "B"]  # third row: labels 1-4, answerKey "2"
    three = du.load_examples("arc_challenge", "eval", dataset_path=_fixture("arc_challenge"))[1]["question"]
    assert "(C) carbon dioxide" in three and "(D)" not in three


def test_mmlu_int_answer_to_letter():
    ds = du.load_examples("mmlu", "test", dataset_path=_fixture("mmlu"))
    assert ds["answer"] == ["B", "C", "B", "D"]
    assert ds[1]["question"].endswith("(A) Venus\n(B) Mars\n(C) Mercury\n(D) Earth")
    assert len(du.load_examples("mmlu", "train", dataset_path=_fixture("mmlu"))) == 2  # auxiliary_train
    assert du.load_examples("mmlu", "eval", dataset_path=_fixture("mmlu"))["answer"] == ["A", "C"]


def test_mmmlu_slices_single_test_split_disjointly():
    parts = {s: du.load_examples("mmmlu", s, dataset_path=_fixture("mmmlu")) for s in ("train", "eval", "test")}
    assert [len(parts[s]) for s in ("train", "eval", "test")] == [8, 1, 1]
    questions = [q for s in ("train", "eval", "test") for q in parts[s]["question"]]
    assert len(set(questions)) == 10
    assert parts["train"][0]["answer"] == "B" and "(B) Canberra" in parts["train"][0]["question"]
    assert parts["test"][0]["answer"] == "D"


def test_wikitext_raw_rows_kept():
    raw = du.load_raw_dataset("wikitext", "train", dataset_path=_fixture("wikitext"))
    ex = du.load_examples("wikitext", "train", dataset_path=_fixture("wikitext"))
    assert ex["question"] == raw["text"] and "" in ex["question"]
    assert " = Marrow Creek Bridge = \n" in ex["question"]
    with pytest.raises(ValueError, match="raw text"):
        du.load_task_dataset("wikitext", "train", _tokenizer(), dataset_path=_fixture("wikitext"))


# --------------------------------------------------------------------------- errors


def test_missing_column_error_names_dataset_split_column(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "solution": "#### 1"}])
    with pytest.raises(ValueError) as err:
        du.load_examples("gsm8k", "train", dataset_path=str(tmp_path))
    message = str(err.value)
    assert "gsm8k" in message and "'train'" in message and "['answer']" in message and "solution" in message


def test_unparseable_gsm8k_gold_names_row(tmp_path):
    rows = [{"question": "q0", "answer": "a\n#### 1"}, {"question": "q1", "answer": "no marker 5"}]
    _write_jsonl(tmp_path / "test.jsonl", rows)
    with pytest.raises(ValueError, match=r"'gsm8k' split 'test' row 1: .*####"):
        du.load_examples("gsm8k", "test", dataset_path=str(tmp_path))


def test_unparseable_math_gold_names_row(tmp_path):
    row = {"problem": "p", "level": "Level 1", "type": "Algebra", "solution": "The answer is 3."}
    _write_jsonl(tmp_path / "train.jsonl", [row])
    with pytest.raises(ValueError, match=r"'math' split 'train' row 0: .*boxed"):
        du.load_examples("math", "train", dataset_path=str(tmp_path))


def test_arc_answer_key_not_a_label(tmp_path):
    row = {"id": "x", "question": "q", "choices": {"text": ["a", "b", "c"], "label": ["A", "B", "C"]}, "answerKey": "D"}
    _write_jsonl(tmp_path / "validation.jsonl", [row])
    with pytest.raises(ValueError, match="'arc_challenge' split 'eval' row 0"):
        du.load_examples("arc_challenge", "eval", dataset_path=str(tmp_path))


def test_missing_local_split_file(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "answer": "#### 1"}])
    with pytest.raises(FileNotFoundError, match="test"):
        du.load_examples("gsm8k", "test", dataset_path=str(tmp_path))


def test_single_local_file_and_sanity_check(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"step\n#### {i}"} for i in range(40)]
    path = _write_jsonl(tmp_path / "all.jsonl", rows)
    assert len(du.load_examples("gsm8k", "train", dataset_path=str(path))) == 40
    small = du.load_examples("gsm8k", "train", dataset_path=str(path), sanity_check=True)
    assert len(small) == du.SANITY_CHECK_SIZE == 32 and small["answer"][:3] == ["0", "1", "2"]


# --------------------------------------------------------------------------- generated sets


def test_arithmetic_defaults_sums_and_determinism():
    a = du.load_examples("arithmetic", "train", sanity_check=True, seed=3)
    b = du.load_examples("arithmetic", "train", sanity_check=True, seed=3)
    c = du.load_examples("arithmetic", "train", sanity_check=True, seed=4)
    assert a["question"] == b["question"] and a["question"] != c["question"]
    for row in a:
        terms = [int(t) for t in row["question"].split(" + ")]
        assert len(terms) == 15 and all(1 <= t <= 99 for t in terms)
        assert int(row["answer"]) == sum(terms)
        assert row["rationale"].endswith(f"= {sum(terms)}.")
    first, second = (int(t) for t in a[0]["question"].split(" + ")[:2])
    assert a[0]["rationale"].startswith(f"{first} + {second} = {first + second}. ")


def test_arithmetic_rationale_format_and_splits_differ():
    row = arithmetic_example({"terms": [12, 35, 8]})
    assert row == {"question": "12 + 35 + 8", "rationale": "12 + 35 = 47. 47 + 8 = 55.", "answer": "55"}
    train = du.load_raw_dataset("arithmetic", "train", sanity_check=True)["terms"]
    test = du.load_raw_dataset("arithmetic", "test", sanity_check=True)["terms"]
    assert train != test


def test_arithmetic_default_split_sizes_and_num_examples():
    assert du.GENERATED_SPLIT_SIZES == {"train": 5000, "eval": 200, "test": 500}
    assert len(du.load_raw_dataset("arithmetic", "eval")) == 200
    ds = du.load_examples("arithmetic", "test", dataset_config="num_terms=3, max_value=20, num_examples=50")
    assert len(ds) == 50
    for row in ds:
        terms = [int(t) for t in row["question"].split(" + ")]
        assert len(terms) == 3 and max(terms) <= 20 and int(row["answer"]) == sum(terms)


def test_arithmetic_negative_really_has_negatives():
    ds = du.load_examples("arithmetic_negative", "train", dataset_config="num_examples=100")
    negatives = 0
    for row in ds:
        terms = row["question"].split(" + ")
        assert all(TERM_RE.fullmatch(t) for t in terms), row["question"]  # no bare "-n"
        values = [_term_value(t) for t in terms]
        assert len(values) == 15 and 0 not in values and all(-99 <= v <= 99 for v in values)
        assert int(row["answer"]) == sum(values)
        negatives += sum(v < 0 for v in values)
    assert negatives > 300  # about half of the 1500 terms


@pytest.mark.parametrize("config, pattern", [
    ("num_term=3", "unknown dataset_config key 'num_term'.*num_terms"),
    ("num_terms", "malformed"),
    ("num_terms=0", "num_terms"),
    ("num_examples=0", "num_examples"),
    ("max_value=abc", "max_value"),
])
def test_generator_config_errors(config, pattern):
    with pytest.raises(ValueError, match=pattern):
        du.load_raw_dataset("arithmetic", "train", dataset_config=config)


# --------------------------------------------------------------------------- prompts / task datasets


def test_format_prompt_plain_text():
    tok = _tokenizer()
    assert format_prompt(tok, question_text("What is 2+2?")) == "Question: What is 2+2?\nLet's think step by step.\n"
    assert format_prompt(tok, question_text("Q", "Think.")) == "Question: Q\nThink.\n"
    assert format_prompt(tok, question_text("Q", "")) == "Question: Q\n"
    assert format_prompt(tok, "Add. 3 + 4", "Reasoning:") == "Add. 3 + 4\nReasoning:"  # Markovian's prompt


def test_format_prompt_chat_template_one_rule_for_every_trainer():
    tok = _tokenizer(CHAT_TEMPLATE)
    prompt = format_prompt(tok, question_text("What is 2+2?"))
    assert prompt == "<|user|>Question: What is 2+2?\nLet's think step by step.<|end|><|assistant|>"
    assert format_prompt(tok, "Add. 3 + 4", "Reasoning:") == "<|user|>Add. 3 + 4<|end|><|assistant|>Reasoning:"
    plain = format_prompt(tok, "Add. 3 + 4", "Reasoning:", use_chat_template=False)
    assert plain == "Add. 3 + 4\nReasoning:"


def test_cot_trigger_reaches_every_prompt():
    tok = _tokenizer()
    ds = du.load_task_dataset("arithmetic", "eval", tok, dataset_config="num_examples=5", cot_trigger="Add carefully.")
    assert all(q.endswith("\nAdd carefully.\n") for q in ds["queries"])
    chat = du.load_task_dataset("arithmetic", "eval", _tokenizer(CHAT_TEMPLATE), dataset_config="num_examples=5",
                                cot_trigger="Add carefully.")
    assert all("Add carefully.<|end|><|assistant|>" in q for q in chat["queries"])


def test_load_task_dataset_latro_columns():
    ds = du.load_task_dataset("gsm8k", "train", _tokenizer(CHAT_TEMPLATE), dataset_path=_fixture("gsm8k"))
    assert set(ds.column_names) == {"queries", "responses", "groundtruth", "question", "rationale"}
    assert ds[1]["responses"] == " The answer is 1285." and ds[1]["groundtruth"] == "1285"
    assert ds[0]["queries"].startswith("<|user|>Question: A bakery") and ds[0]["queries"].endswith("<|assistant|>")
    mc = du.load_task_dataset("arc_challenge", "test", _tokenizer(), dataset_path=_fixture("arc_challenge"))
    assert mc[1]["responses"] == " The answer is C." and mc[1]["queries"].startswith("Question: A student")


def test_custom_local_file_used_as_is(tmp_path):
    ds = du.load_task_dataset(_fixture("custom/train.jsonl"), "train", _tokenizer())
    assert ds.column_names == ["queries", "responses", "groundtruth"]
    assert ds["groundtruth"] == ["56", "60", "-5"] and ds[0]["responses"] == " The answer is 56."
    from_dir = du.load_task_dataset(_fixture("custom"), "train", _tokenizer())
    assert from_dir["queries"] == ds["queries"]
    _write_jsonl(tmp_path / "bad.jsonl", [{"queries": "q", "groundtruth": "1"}])
    with pytest.raises(ValueError, match="responses"):
        du.load_task_dataset(str(tmp_path / "bad.jsonl"), "train", _tokenizer())
    _write_jsonl(tmp_path / "ints.jsonl", [{"queries": "q", "responses": " The answer is 4.", "groundtruth": 4}])
    assert du.load_task_dataset(str(tmp_path / "ints.jsonl"), "test", _tokenizer())["groundtruth"] == ["4"]


def test_yoruba_mmmlu_fixture_keeps_its_diacritics_and_carves_80_10_10():
    import unicodedata

    parts = {s: du.load_examples("mmmlu", s, dataset_path=_fixture("mmmlu_yo_ng")) for s in ("train", "eval", "test")}
    assert [len(p) for p in parts.values()] == [8, 1, 1]
    first = parts["train"][0]
    assert first["question"].startswith("Kí ni olú-ìlú orílẹ̀-èdè Nàìjíríà?") and first["answer"] == "B"
    assert any(unicodedata.combining(c) for c in first["question"])  # real combining diacritics (ẹ̀)
    assert du.CARVED_FROM_TEST == du.get_dataset_spec("mmmlu").splits
