"""Moved to `implicit_reasoning.evaluation.checkers`: re-exported here until the next release."""

import warnings

from implicit_reasoning.evaluation.checkers import (
    NUMERIC_TOLERANCE,
    checker_for,
    choice_equal,
    extract_answer,
    extract_math,
    extract_numeric,
    is_correct,
    majority_vote,
    math_equal,
    normalize_math,
    numeric_equal,
    stated_numeric,
)

__all__ = [
    "NUMERIC_TOLERANCE",
    "checker_for",
    "choice_equal",
    "extract_answer",
    "extract_math",
    "extract_numeric",
    "is_correct",
    "majority_vote",
    "math_equal",
    "normalize_math",
    "numeric_equal",
    "stated_numeric",
]

warnings.warn(
    "implicit_reasoning.utils.eval_utils moved to implicit_reasoning.evaluation.checkers;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
