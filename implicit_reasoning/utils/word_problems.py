"""Moved to `implicit_reasoning.data.word_problems`: re-exported here until the next release."""

import warnings

from implicit_reasoning.data.word_problems import (
    ITEMS,
    NAMES,
    OPERATIONS,
    RELATIVES,
    generate_word_problems,
    word_problem,
    word_problem_example,
)

__all__ = [
    "ITEMS",
    "NAMES",
    "OPERATIONS",
    "RELATIVES",
    "generate_word_problems",
    "word_problem",
    "word_problem_example",
]

warnings.warn(
    "implicit_reasoning.utils.word_problems moved to implicit_reasoning.data.word_problems;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
