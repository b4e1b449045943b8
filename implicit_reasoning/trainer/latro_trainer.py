"""Moved to `implicit_reasoning.trainer.latro.trainer`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.latro.trainer import (
    ROW_KEYS,
    LatroTrainer,
)

__all__ = [
    "ROW_KEYS",
    "LatroTrainer",
]

warnings.warn(
    "implicit_reasoning.trainer.latro_trainer moved to implicit_reasoning.trainer.latro.trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
