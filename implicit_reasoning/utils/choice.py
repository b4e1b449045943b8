"""Moved to `implicit_reasoning.evaluation.choice`: re-exported here until the next release."""

import warnings

from implicit_reasoning.evaluation.choice import (
    GAP,
    extract_choice,
    stated_choice,
)

__all__ = [
    "GAP",
    "extract_choice",
    "stated_choice",
]

warnings.warn(
    "implicit_reasoning.utils.choice moved to implicit_reasoning.evaluation.choice;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
