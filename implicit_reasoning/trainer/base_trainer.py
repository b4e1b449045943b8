"""Moved to `implicit_reasoning.trainer.core.base_trainer`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.base_trainer import (
    NOTHING_TO_TRAIN,
    BaseTrainer,
    collate_rows,
)

__all__ = [
    "NOTHING_TO_TRAIN",
    "BaseTrainer",
    "collate_rows",
]

warnings.warn(
    "implicit_reasoning.trainer.base_trainer moved to implicit_reasoning.trainer.core.base_trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
