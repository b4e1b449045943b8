"""Moved to `implicit_reasoning.trainer.sft.trainer`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.sft.trainer import (
    RationaleCollator,
    SFTBaselineTrainer,
)

__all__ = [
    "RationaleCollator",
    "SFTBaselineTrainer",
]

warnings.warn(
    "implicit_reasoning.trainer.sft_trainer moved to implicit_reasoning.trainer.sft.trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
