"""Markovian tasks in the registry: wiki_continuation / wiki_compression (token slicing), arithmetic_negative."""

import re
from pathlib import Path

import pytest

from implicit_reasoning.data import registry as du
from implicit_reasoning.demo import build_demo_tokenizer
from implicit_reasoning.evaluation.checkers import checker_for

WIKI = str(Path(__file__).parent / "fixtures" / "wikitext")


@pytest.fixture(scope="module")
def tok():
    return build_demo_tokenizer()


def test_wiki_tasks_are_registered_on_the_wikitext_schema():
    for name in du.WIKI_TASKS:
        spec = du.get_dataset_spec(name)
        assert (spec.hub_path, spec.hub_config) == ("Salesforce/wikitext", "wikitext-103-raw-v1")
        assert spec.required_columns == ("text",) and checker_for(name) == du.CHECKER_NONE


def test_articles_start_at_level_one_headings_only():
    lines = ["", " = A = \n", "", " a1 \n", " = = Sub = = \n", " a2 \n", " = B = \n", " b1 \n"]
    assert du.wikitext_articles(lines) == ["= A = \n a1 \n = = Sub = = \n a2", "= B = \n b1"]


def test_wiki_continuation_slices_consecutive_token_chunks(tok):
    lines = du.load_raw_dataset("wikitext", "train", dataset_path=WIKI)["text"]
    (article,) = du.wikitext_articles(lines)
    ids = tok(article).input_ids
    ds = du.load_markovian_examples("wiki_continuation", "train", tok, 12, 6, dataset_path=WIKI)
    assert len(ds) == len(ids) // 18
    assert ds[0]["question"] == tok.decode(ids[:12]).strip() and ds[0]["answer"] == tok.decode(ids[12:18]).strip()
    assert ds[1]["question"] == tok.decode(ids[18:30]).strip()
    assert ds.column_names == ["question", "rationale", "answer"]


def test_wiki_compression_reconstructs_the_same_chunk(tok):
    ds = du.load_markovian_examples("wiki_compression", "eval", tok, 10, 999, dataset_path=WIKI)
    assert len(ds) > 1 and all(row["question"] == row["answer"] and row["answer"] for row in ds)


def test_wiki_chunk_longer_than_every_article_is_a_clear_error(tok):
    with pytest.raises(ValueError, match=r"'wiki_continuation' split 'test'.*question_length=5000"):
        du.load_markovian_examples("wiki_continuation", "test", tok, 5000, 10, dataset_path=WIKI)


def test_non_wiki_names_are_plain_examples(tok):
    ds = du.load_markovian_examples("arithmetic_negative", "train", tok, dataset_config="num_examples=20")
    negatives = 0
    for row in ds:
        terms = row["question"].split(" + ")
        values = [-int(t[2:-1]) if t.startswith("(-") else int(t) for t in terms]
        assert all(re.fullmatch(r"\(-\d+\)|\d+", t) for t in terms) and int(row["answer"]) == sum(values)
        negatives += sum(v < 0 for v in values)
    assert negatives > 60  # about half of 300 terms are negative
