"""Answer extraction and correctness, shared by training-time evaluation and scripts/evaluation.py.

Each data set names a checker in the registry (:mod:`implicit_reasoning.data.registry`):

* ``"numeric"`` (gsm8k, arithmetic, custom files): the first number after the last
  answer marker, else the last number in the text. ``$`` and thousands commas are dropped,
  ``(-5)`` and ``-5`` are negative; numbers are compared with tolerance 1e-6.
* ``"math"`` (MATH): the last ``\\boxed{...}``, else the rest of the line after the last
  answer marker; compared with math-verify when installed, plus a normalized string compare.
* ``"multiple_choice"`` (arc_challenge, mmlu, mmmlu): the option letter A-E of the last answer
  statement, in any script ("The answer is (b).", "Ìdáhùn: C", "答案是C"), else a letter on a
  line of its own, else the last ``(B)`` / ``B)``; never a bare letter inside prose
  (:mod:`implicit_reasoning.evaluation.choice`).

The answer marker (case-insensitive) is "Answer:" anywhere, or "answer is" after "the", "my",
"final" or "correct" or at the start of a sentence or line ("The answer is 7", "Final answer
is 7", "Answer is 7"); "The original answer is 1" is no answer statement.

A completion that was cut off by the token budget (``cut_off=True``) is read only from an
answer statement (numeric: after the marker; multiple choice: an answer statement, step 1 of
:mod:`implicit_reasoning.evaluation.choice`; math: ``\\boxed`` or the marker): the fallbacks (the last number, a trailing option letter) would read whatever the
model was writing when the budget ran out.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

from implicit_reasoning.data.number_parsing import numbers_in as _numbers
from implicit_reasoning.data.registry import (
    CHECKER_MATH,
    CHECKER_MULTIPLE_CHOICE,
    CHECKER_NUMERIC,
    LOCAL_BUILDERS,
    get_dataset_spec,
    last_boxed_content,
    list_datasets,
)
from implicit_reasoning.evaluation.choice import extract_choice, stated_choice

try:  # optional: symbolic equivalence for MATH answers
    from math_verify import parse as _mv_parse
    from math_verify import verify as _mv_verify
except ImportError:  # pragma: no cover - exercised only without math-verify
    _mv_parse = _mv_verify = None

NUMERIC_TOLERANCE = 1e-6

# "answer is" after the / my / final / correct, or at the start of a sentence or line; "answer:" anywhere
_MARKER_RE = re.compile(r"(?:\b(?:the|my|final|correct)\s+|(?:^|(?<=[.!?:]))\s*)answer\s+is\b|\banswer\s*:",
                        re.IGNORECASE | re.MULTILINE)


def checker_for(dataset_name: str) -> str:
    """Checker key for a registry name; local custom files or unknown paths use ``"numeric"``."""
    try:
        return get_dataset_spec(dataset_name).checker
    except ValueError:
        path = Path(dataset_name)
        if path.exists() or "/" in dataset_name or "\\" in dataset_name or path.suffix in LOCAL_BUILDERS:
            return CHECKER_NUMERIC
        raise ValueError(
            f"no answer checker for {dataset_name!r}: not a registered dataset ({', '.join(list_datasets())}) "
            "nor a local path"
        ) from None


def _after_last_marker(text: str) -> str | None:
    matches = list(_MARKER_RE.finditer(text))
    return text[matches[-1].end():] if matches else None


# --------------------------------------------------------------------------- numeric


def stated_numeric(completion: str) -> str | None:
    """First number after the last answer marker, or None."""
    tail = _after_last_marker(completion)
    found = _numbers(tail) if tail is not None else []
    return found[0] if found else None


def extract_numeric(completion: str) -> str | None:
    """First number after the last answer marker, else the last number in the text."""
    stated = stated_numeric(completion)
    if stated is not None:
        return stated
    found = _numbers(completion)
    return found[-1] if found else None


def numeric_equal(prediction: str, groundtruth: str) -> bool:
    gold = _numbers(str(groundtruth))
    if len(gold) != 1:  # not a plain number: fall back to exact text
        return prediction.strip() == str(groundtruth).strip()
    return abs(float(prediction) - float(gold[0])) <= NUMERIC_TOLERANCE


# --------------------------------------------------------------------------- math


def extract_math(completion: str) -> str | None:
    r"""Last ``\boxed{...}``, else the rest of the line after the last answer marker."""
    boxed = last_boxed_content(completion)
    if boxed:
        return boxed
    tail = _after_last_marker(completion)
    if tail is None:
        return None
    answer = tail.strip().splitlines()[0] if tail.strip() else ""
    answer = answer.strip().rstrip(".").strip().strip("$").strip()
    return answer or None


def normalize_math(answer: str) -> str:
    r"""Light LaTeX normalization: no spaces, ``\left``/``\right``, ``\!``, ``$``, trailing ``.``."""
    answer = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", answer)
    answer = re.sub(r"\\[dt]frac", r"\\frac", answer)
    answer = re.sub(r"\\[!,;:]|\s+|\$", "", answer)
    return answer.rstrip(".")


def math_equal(prediction: str, groundtruth: str) -> bool:
    if normalize_math(prediction) == normalize_math(groundtruth):
        return True
    if _mv_parse is None:
        return False
    # math-verify's timeouts use signal.alarm, which only works in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold = _mv_parse(f"${groundtruth}$", parsing_timeout=timeout)
    pred = _mv_parse(f"${prediction}$", parsing_timeout=timeout)
    return bool(gold and pred and _mv_verify(gold, pred, timeout_seconds=timeout))


# --------------------------------------------------------------------------- multiple choice


def choice_equal(prediction: str, groundtruth: str) -> bool:
    return prediction.strip().upper() == str(groundtruth).strip().upper()


# --------------------------------------------------------------------------- public API

_EXTRACTORS = {CHECKER_NUMERIC: extract_numeric, CHECKER_MATH: extract_math, CHECKER_MULTIPLE_CHOICE: extract_choice}
# a cut-off completion: answer statements only (MATH's \boxed and marker already are)
_STATED = {CHECKER_NUMERIC: stated_numeric, CHECKER_MATH: extract_math, CHECKER_MULTIPLE_CHOICE: stated_choice}
_MATCHERS = {CHECKER_NUMERIC: numeric_equal, CHECKER_MATH: math_equal, CHECKER_MULTIPLE_CHOICE: choice_equal}


def _checker(dataset_name: str) -> str:
    checker = checker_for(dataset_name)
    if checker not in _EXTRACTORS:
        raise ValueError(f"dataset {dataset_name!r} has no answer checker (checker key {checker!r})")
    return checker


def extract_answer(dataset_name: str, completion: str, cut_off: bool = False) -> str | None:
    """The answer a completion gives, in the dataset's checker format, or ``None``.

    ``cut_off``: the completion ran out of tokens; only an answer statement counts (module docstring).
    """
    return (_STATED if cut_off else _EXTRACTORS)[_checker(dataset_name)](completion)


def is_correct(dataset_name: str, completion: str, groundtruth: str, cut_off: bool = False) -> bool:
    """Whether ``completion``'s extracted answer matches ``groundtruth`` (``cut_off`` as in `extract_answer`)."""
    checker = _checker(dataset_name)
    prediction = extract_answer(dataset_name, completion, cut_off)
    return prediction is not None and _MATCHERS[checker](prediction, groundtruth)


def majority_vote(answers: list[str | None]) -> str | None:
    """Most common non-``None`` answer; ties go to the one seen first; ``None`` if none."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    return max(counts, key=counts.__getitem__)  # Counter keeps first-seen order; max keeps the first maximum
