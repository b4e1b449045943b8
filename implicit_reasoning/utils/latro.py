"""Moved to `implicit_reasoning.objectives.latro`: re-exported here until the next release."""

import warnings

from implicit_reasoning.objectives.latro import (
    latro_loss,
    latro_rewards,
    non_stop_penalised,
)

__all__ = [
    "latro_loss",
    "latro_rewards",
    "non_stop_penalised",
]

warnings.warn(
    "implicit_reasoning.utils.latro moved to implicit_reasoning.objectives.latro;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
