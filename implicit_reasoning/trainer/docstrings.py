"""Moved to `implicit_reasoning.trainer.core.docstrings`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.docstrings import (
    DEMO,
    EXAMPLES,
    TRAINER_ARGS,
    documented,
    field_lines,
)

__all__ = [
    "DEMO",
    "EXAMPLES",
    "TRAINER_ARGS",
    "documented",
    "field_lines",
]

warnings.warn(
    "implicit_reasoning.trainer.docstrings moved to implicit_reasoning.trainer.core.docstrings;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
