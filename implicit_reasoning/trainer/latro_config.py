"""Moved to `implicit_reasoning.trainer.latro.config`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.latro.config import (
    DEFAULT_STOP_SEQS,
    STOP_TOKEN_CHOICES,
    LatroConfig,
)

__all__ = [
    "DEFAULT_STOP_SEQS",
    "STOP_TOKEN_CHOICES",
    "LatroConfig",
]

warnings.warn(
    "implicit_reasoning.trainer.latro_config moved to implicit_reasoning.trainer.latro.config;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
