"""Checks of the rows a trainer reads, before anything is trained or written.

Every error is a ``ValueError`` naming the dataset (for a local file: its path), the split, the
row (0-based, in the loaded split) and the column, so the row can be found and fixed:

* a text the trainer needs (a prompt, a gold response, a question) that is missing or empty;
* a gold answer the dataset's answer checker cannot compare completions with (the numeric checker
  of custom files needs one number; multiple choice an option letter).

Text in any script passes unchanged (the tokenizer decides how it is split).
"""

from __future__ import annotations

from collections.abc import Sequence

from .number_parsing import numbers_in


def _empty(value) -> str | None:
    if value is None:
        return "missing (null)"
    if not isinstance(value, str):
        return f"{value!r} is not a string"
    return "an empty string" if not value.strip() else None


def check_text_columns(ds, columns: Sequence[str], dataset: str, split: str) -> None:
    """Every value of ``columns`` is a non-empty string."""
    for column in columns:
        for row, value in enumerate(ds[column]):
            problem = _empty(value)
            if problem:
                raise ValueError(f"dataset {dataset!r} split {split!r} row {row} column {column!r}: {problem}; "
                                 "every row needs a non-empty value (drop or fix the row)")


def gold_problem(checker: str, gold) -> str | None:
    """Why ``checker`` cannot score completions against the gold answer ``gold``, or None when it can.

    Checker keys as in ``data_utils`` (not imported: ``data_utils`` imports this module).
    """
    text = "" if gold is None else str(gold).strip()
    if checker == "none":
        return None
    if not text:
        return "the gold answer is empty"
    if checker == "numeric" and len(numbers_in(text)) != 1:
        return f"gold answer {text[:60]!r} is not one number, which the numeric checker compares (e.g. '42', '-3.5')"
    if checker == "multiple_choice" and text not in "ABCDE":
        return f"gold answer {text[:60]!r} is not an option letter A-E (the multiple-choice checker)"
    return None


def check_gold_column(ds, column: str, checker: str, dataset: str, split: str) -> None:
    """Every gold answer of ``column`` is one that ``checker`` can compare a completion's answer with."""
    for row, gold in enumerate(ds[column]):
        problem = gold_problem(checker, gold)
        if problem:
            raise ValueError(f"dataset {dataset!r} split {split!r} row {row} column {column!r}: {problem}")


def example_problem(example: dict, checker: str) -> str | None:
    """Why a converted registry example (``question`` / ``answer``) cannot be trained on, or None."""
    if checker == "none":  # raw text: empty rows are dropped later (min_chars)
        return None
    if _empty(example.get("question")):
        return f"the question is {_empty(example.get('question'))}"
    return gold_problem(checker, example.get("answer"))
