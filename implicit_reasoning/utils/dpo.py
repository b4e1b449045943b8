"""Moved to `implicit_reasoning.objectives.dpo`: re-exported here until the next release."""

import warnings

from implicit_reasoning.objectives.dpo import (
    dpo_loss,
)

__all__ = [
    "dpo_loss",
]

warnings.warn(
    "implicit_reasoning.utils.dpo moved to implicit_reasoning.objectives.dpo;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
