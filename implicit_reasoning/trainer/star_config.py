"""Moved to `implicit_reasoning.trainer.star.config`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.star.config import (
    STAR_COT_TRIGGER,
    STAR_STRATEGIES,
    STaRConfig,
)

__all__ = [
    "STAR_COT_TRIGGER",
    "STAR_STRATEGIES",
    "STaRConfig",
]

warnings.warn(
    "implicit_reasoning.trainer.star_config moved to implicit_reasoning.trainer.star.config;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
