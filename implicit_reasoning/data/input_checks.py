"""Checks of the rows a trainer reads, before anything is trained or written.

Every error is a ``ValueError`` naming the dataset (for a local file: its path), the split, the
row (0-based, in the loaded split) and the column, so the row can be found and fixed:

* a text the trainer needs (a prompt, a gold response, a question) that is missing or empty;
* a gold answer the dataset's answer checker cannot compare completions with (the numeric checker
  of custom files needs one number; multiple choice an option letter);
* a local text file (JSON lines, JSON, CSV) that is not UTF-8: the error names the file, the split and the
  row (and line) of the first byte that does not decode;
* a local path (data or model) that does not exist: named as a missing path, not as an unknown name.

Text in any script passes unchanged (the tokenizer decides how it is split).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .number_parsing import numbers_in

TEXT_FILE_SUFFIXES = (".jsonl", ".json", ".csv")
_utf8_checked: dict[tuple[str, int, int], None] = {}


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

    Checker keys as in ``registry`` (not imported: ``registry`` imports this module).
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


def looks_like_path(name: str) -> bool:
    """Whether `name` is meant as a local path rather than a registry name or a hub id (`org/name`): it starts
    with `.`, `/` or `~`, holds a backslash or two slashes, or ends with a data file's suffix."""
    name = str(name)
    return (name.startswith((".", "/", "~")) or os.path.isabs(name) or "\\" in name or name.count("/") > 1
            or name.lower().endswith((*TEXT_FILE_SUFFIXES, ".parquet")))


def missing_path_message(name: str, field: str) -> str | None:
    """`field=name: no such file or directory ...` when `name` looks like a local path that does not exist."""
    if not looks_like_path(name) or os.path.exists(os.path.expanduser(name)):
        return None
    return (f"{field}={name!r}: no such file or directory (looked for {os.path.abspath(os.path.expanduser(name))!r}, "
            f"from the working directory {os.getcwd()!r})")


def check_utf8(path: str | Path, dataset: str, split: str) -> None:
    """A local JSON lines / JSON / CSV file decodes as UTF-8; else a `ValueError` naming file, split, row and line.

    Rows are 0-based rows of the file (JSON lines: non-empty lines; CSV: lines after the header); a JSON
    file's rows are not lines, so only the line is named. Each file is read once per size and mtime."""
    path = Path(path)
    if path.suffix.lower() not in TEXT_FILE_SUFFIXES:
        return
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _utf8_checked:
        return
    rows = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                suffix = path.suffix.lower()
                row = {".jsonl": f"row {rows} (line {number})", ".csv": f"row {number - 2} (line {number})"}.get(
                    suffix, f"line {number}")
                raise ValueError(
                    f"dataset {dataset!r} split {split!r}: file {str(path)!r} is not UTF-8 text: {row} has byte 0x"
                    f"{line[error.start]:02x} at byte {error.start + 1} of the line, which UTF-8 cannot decode. Save "
                    f"the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 {path.name} > utf8_{path.name}`)"
                ) from None
            rows += bool(line.strip())
    _utf8_checked[key] = None
