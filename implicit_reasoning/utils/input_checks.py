"""Moved to `implicit_reasoning.data.input_checks`: re-exported here until the next release."""

import warnings

from implicit_reasoning.data.input_checks import (
    TEXT_FILE_SUFFIXES,
    check_gold_column,
    check_text_columns,
    check_utf8,
    example_problem,
    gold_problem,
    looks_like_path,
    missing_path_message,
)

__all__ = [
    "TEXT_FILE_SUFFIXES",
    "check_gold_column",
    "check_text_columns",
    "check_utf8",
    "example_problem",
    "gold_problem",
    "looks_like_path",
    "missing_path_message",
]

warnings.warn(
    "implicit_reasoning.utils.input_checks moved to implicit_reasoning.data.input_checks;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
