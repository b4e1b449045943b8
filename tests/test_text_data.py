"""Tests for raw-text data sets (implicit_reasoning.data.raw_text); no network: hub-schema fixtures."""

import json
from pathlib import Path

import datasets
import pytest

from implicit_reasoning.data import registry as du
from implicit_reasoning.data.raw_text import load_text_dataset

FIXTURES = Path(__file__).parent / "fixtures"
SPLITS = ("train", "eval", "test")


def _fixture(name):
    return str(FIXTURES / name)


def _rows(name, hub_split):
    return [json.loads(line) for line in (FIXTURES / name / f"{hub_split}.jsonl").read_text().splitlines()]


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _texts(name, split, **kwargs):
    ds = load_text_dataset(name, split, dataset_path=_fixture(name), **kwargs)
    assert ds.column_names == ["text"]
    return ds["text"]


# --------------------------------------------------------------------------- registry entries


@pytest.mark.parametrize("name, hub_path, config, splits, columns, revision", [
    ("cnn_dailymail", "abisee/cnn_dailymail", "3.0.0", {"train": "train", "eval": "validation", "test": "test"},
     ("article", "highlights", "id"), None),
    ("daily_dialog", "li2017dailydialog/daily_dialog", None,
     {"train": "train", "eval": "validation", "test": "test"}, ("dialog", "act", "emotion"), "refs/convert/parquet"),
    ("europarl", "Helsinki-NLP/europarl", "en-fr", du.CARVED_FROM_TRAIN, ("translation",), None),
    ("bookcorpus", "rojagtap/bookcorpus", None, du.CARVED_FROM_TRAIN, ("text",), None),
])
def test_raw_text_specs(name, hub_path, config, splits, columns, revision):
    spec = du.get_dataset_spec(name)
    assert (spec.hub_path, spec.hub_config, spec.splits, spec.required_columns) == (hub_path, config, splits, columns)
    assert spec.checker == du.CHECKER_NONE and spec.hub_revision == revision
    assert du.CARVED_FROM_TRAIN == {"train": "train[:80%]", "eval": "train[80%:90%]", "test": "train[90%:]"}


def test_hub_calls_use_id_config_split_and_revision(monkeypatch):
    calls = []
    rows = {"li2017dailydialog/daily_dialog": {"dialog": [" Hi . ", " Hello . "], "act": [1, 1], "emotion": [0, 0]},
            "Helsinki-NLP/europarl": {"translation": {"en": " Yes. ", "fr": "Oui."}}}

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split, kwargs))
        return datasets.Dataset.from_list([rows[path]])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_text_dataset("daily_dialog", "eval")["text"] == ["Hi .\nHello ."]
    assert load_text_dataset("europarl", "test")["text"] == ["Yes."]
    assert calls == [("li2017dailydialog/daily_dialog", None, "validation", {"revision": "refs/convert/parquet"}),
                     ("Helsinki-NLP/europarl", "en-fr", "train[90%:]", {})]


# --------------------------------------------------------------------------- each set, each split


def test_cnn_dailymail_article_not_highlights():
    for split, hub_split in (("train", "train"), ("eval", "validation"), ("test", "test")):
        rows = _rows("cnn_dailymail", hub_split)
        assert _texts("cnn_dailymail", split) == [r["article"].strip() for r in rows]
    train = _texts("cnn_dailymail", "train")
    assert train[0].startswith("By . Staff Reporter .") and train[0].endswith("for 20 years .")
    assert not any("Judges tasted" in t for t in train)  # the highlights text
    assert _texts("cnn_dailymail", "test")[1].startswith("By . Daily Mail Reporter . A lighthouse keeper's")
    assert _texts("cnn_dailymail", "train", text_column="highlights")[0] == (
        "Village bakery in Kent named best in Britain .\nJudges tasted more than 400 loaves .")


def test_daily_dialog_turns_stripped_and_joined():
    assert _texts("daily_dialog", "train")[0] == (
        "Shall we take the bus to the museum this afternoon ?\n"
        "I'd rather walk . It is only twenty minutes and the weather is lovely .\n"
        "All right , but let's leave before two .")
    assert _texts("daily_dialog", "eval") == [
        ("Excuse me , is there a post office near here ?\nYes , go straight ahead and turn left at the bakery .\n"
         "Thank you so much !"),
        "Did you see my umbrella anywhere ?\nIt's by the front door .",
    ]
    assert _texts("daily_dialog", "test")[1] == "Would you like some more tea ?\nJust half a cup , please ."


def test_europarl_english_side_in_disjoint_carved_slices():
    english = [r["translation"]["en"] for r in _rows("europarl", "train")]
    parts = {split: _texts("europarl", split) for split in SPLITS}
    assert parts == {"train": english[:8], "eval": [english[8]], "test": [english[9]]}
    assert parts["eval"] == ["This amendment was approved by the committee."]
    joined = " ".join(t for p in parts.values() for t in p)
    assert "séance" not in joined and "Le débat est clos." not in joined


def test_bookcorpus_disjoint_carved_slices():
    lines = [r["text"] for r in _rows("bookcorpus", "train")]
    parts = {split: _texts("bookcorpus", split) for split in SPLITS}
    assert [len(parts[s]) for s in SPLITS] == [8, 1, 1]
    assert parts["train"] == lines[:8]
    assert parts["test"] == ["when the music stopped , everyone turned to look at the door ."]
    everything = [t for s in SPLITS for t in parts[s]]
    assert len(set(everything)) == 10 and set(everything) == set(lines)


def test_wikitext_rows_become_articles(tmp_path):
    lines = [r["text"] for r in _rows("wikitext", "train")]
    articles = _texts("wikitext", "train")
    assert articles == ["".join(lines).strip()]
    assert articles[0].startswith("= Marrow Creek Bridge = \n The Marrow Creek Bridge is")
    assert "= = History = =" in articles[0] and articles[0].endswith("fitted with iron railings .")
    two = ["", " = First = \n", "", " Alpha text . \n", "", " = Second = \n", " Beta text . \n"]
    _write_jsonl(tmp_path / "validation.jsonl", [{"text": t} for t in two])
    assert load_text_dataset("wikitext", "eval", dataset_path=str(tmp_path))["text"] == [
        "= First = \n Alpha text .", "= Second = \n Beta text ."]


# --------------------------------------------------------------------------- unregistered sets


def test_unregistered_local_file_and_directory(tmp_path):
    rows = [{"body": "  first post  ", "id": 1}, {"body": "", "id": 2}, {"body": "second", "id": 3}]
    path = _write_jsonl(tmp_path / "posts.jsonl", rows)
    ds = load_text_dataset(str(path), "train", text_column="body")
    assert ds.column_names == ["text"] and ds["text"] == ["first post", "second"]
    _write_jsonl(tmp_path / "dir" / "validation.jsonl", [{"body": "held out"}])
    assert load_text_dataset(str(tmp_path / "dir"), "eval", text_column="body")["text"] == ["held out"]


def test_unregistered_hub_id_maps_eval_to_validation(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return datasets.Dataset.from_list([{"content": " a story "}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_text_dataset("someone/stories", "eval", "small", text_column="content")["text"] == ["a story"]
    load_text_dataset("someone/stories", "test", text_column="content")
    assert calls == [("someone/stories", "small", "validation"), ("someone/stories", None, "test")]


# --------------------------------------------------------------------------- filtering and caps


def test_min_chars_and_sanity_check(tmp_path):
    rows = [{"text": "tiny"}, {"text": "   "}] + [{"text": f"line number {i}"} for i in range(48)]
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    assert len(load_text_dataset(str(path), "train", text_column="text")) == 49  # the blank row dropped
    assert load_text_dataset(str(path), "train", text_column="text", min_chars=5)["text"][:2] == [
        "line number 0", "line number 1"]
    assert len(load_text_dataset(str(path), "train", text_column="text", min_chars=5)) == 48
    train = load_text_dataset("bookcorpus", "train", dataset_path=str(path), min_chars=5)
    assert len(train) == 38 and train["text"][-1] == "line number 37"  # train[:80%] = 40 rows, 2 short
    small = load_text_dataset(str(path), "train", text_column="text", sanity_check=True)
    assert len(small) == du.SANITY_CHECK_SIZE == 32 and small["text"][:2] == ["tiny", "line number 0"]
    capped = load_text_dataset("bookcorpus", "train", dataset_path=str(path), sanity_check=True, min_chars=5)
    assert len(capped) == 30  # the raw rows are capped at 32 first, then the 2 short ones dropped


# --------------------------------------------------------------------------- errors


def test_missing_text_column_lists_columns(tmp_path):
    with pytest.raises(ValueError) as err:
        load_text_dataset("cnn_dailymail", "eval", dataset_path=_fixture("cnn_dailymail"), text_column="body")
    message = str(err.value)
    assert "'cnn_dailymail'" in message and "'eval'" in message and "'body'" in message
    assert "['article', 'highlights', 'id']" in message
    path = _write_jsonl(tmp_path / "t.jsonl", [{"content": "x"}])
    with pytest.raises(ValueError, match=r"split 'test' has no text column 'text'; columns present: \['content'\]"):
        load_text_dataset(str(path), "test", text_column="text")


def test_registered_qa_set_needs_text_column():
    with pytest.raises(ValueError, match=r"'gsm8k' split 'train' is a question/answer set.*text_column.*'question'"):
        load_text_dataset("gsm8k", "train", dataset_path=_fixture("gsm8k"))
    ds = load_text_dataset("gsm8k", "train", dataset_path=_fixture("gsm8k"), text_column="question")
    assert ds["text"][0].startswith("A bakery sells muffins")


def test_unregistered_without_text_column(tmp_path):
    path = _write_jsonl(tmp_path / "t.jsonl", [{"content": "x"}])
    with pytest.raises(ValueError, match=r"split 'train'.*needs text_column"):
        load_text_dataset(str(path), "train")


def test_empty_split_after_filtering(tmp_path):
    _write_jsonl(tmp_path / "validation.jsonl", [{"article": "  ", "highlights": "h", "id": "1"}])
    with pytest.raises(ValueError, match=r"'cnn_dailymail' split 'eval': no text .* column 'article'"):
        load_text_dataset("cnn_dailymail", "eval", dataset_path=str(tmp_path))
    path = _write_jsonl(tmp_path / "short.jsonl", [{"body": "ab"}])
    with pytest.raises(ValueError, match=r"split 'train': no text of at least 3 character\(s\) in column 'body'"):
        load_text_dataset(str(path), "train", text_column="body", min_chars=3)


def test_europarl_row_without_english_side(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", [{"translation": {"de": "Ja.", "fr": "Oui."}}] * 10)
    with pytest.raises(ValueError, match=r"'europarl' split 'train' row 0: column 'translation' has no 'en' side"):
        load_text_dataset("europarl", "train", dataset_path=str(tmp_path))


def test_synthetic_text_kinds_are_what_they_say():
    """The generated raw-text sets of tests and the PPO demo: constant, random words, counting, worked sums."""
    rows = {kind: load_text_dataset("synthetic_text", "train", dataset_config=f"kind={kind},num_examples=20,length=12")
            ["text"] for kind in ("constant", "random", "counting", "sums")}
    assert len(set(rows["constant"])) == 1 and rows["constant"][0].startswith("the cat sat on the mat")
    assert len(set(rows["random"])) == 20
    for text in rows["counting"]:  # an arithmetic progression
        numbers = [int(w) for w in text.split()]
        assert len(numbers) == 12 and len({b - a for a, b in zip(numbers, numbers[1:])}) == 1
    for text in rows["sums"]:  # "a + b = c." with each c the next a
        words = text.split()
        for i in range(0, len(words) - 4, 5):
            a, b, c = int(words[i]), int(words[i + 2]), int(words[i + 4].rstrip("."))
            assert a + b == c
    train = load_text_dataset("synthetic_text", "train", dataset_config="kind=random,num_examples=5")["text"]
    evaluation = load_text_dataset("synthetic_text", "eval", dataset_config="kind=random,num_examples=5")["text"]
    assert not set(train) & set(evaluation)  # splits draw from their own seeds
    with pytest.raises(ValueError, match="kind must be one of"):
        load_text_dataset("synthetic_text", "train", dataset_config="kind=poems")
