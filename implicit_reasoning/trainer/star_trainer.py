"""Moved to `implicit_reasoning.trainer.star.trainer`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.star.trainer import (
    BASE_WEIGHTS_FILE,
    ROW_KEYS,
    STaRTrainer,
)

__all__ = [
    "BASE_WEIGHTS_FILE",
    "ROW_KEYS",
    "STaRTrainer",
]

warnings.warn(
    "implicit_reasoning.trainer.star_trainer moved to implicit_reasoning.trainer.star.trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
