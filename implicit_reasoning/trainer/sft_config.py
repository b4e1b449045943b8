"""Moved to `implicit_reasoning.trainer.sft.config`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.sft.config import (
    SFTBaselineConfig,
)

__all__ = [
    "SFTBaselineConfig",
]

warnings.warn(
    "implicit_reasoning.trainer.sft_config moved to implicit_reasoning.trainer.sft.config;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
