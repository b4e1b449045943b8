"""Moved to `implicit_reasoning.trainer.core.rollout_trainer`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.rollout_trainer import (
    FROZEN_FILE,
    PromptGroupSampler,
    RolloutTrainer,
    SaveFrozenCopyCallback,
    is_zero3,
    split_rows,
)

__all__ = [
    "FROZEN_FILE",
    "PromptGroupSampler",
    "RolloutTrainer",
    "SaveFrozenCopyCallback",
    "is_zero3",
    "split_rows",
]

warnings.warn(
    "implicit_reasoning.trainer.rollout_trainer moved to implicit_reasoning.trainer.core.rollout_trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
