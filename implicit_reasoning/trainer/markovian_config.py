"""Moved to `implicit_reasoning.trainer.markovian.config`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.markovian.config import (
    COT_END_OF_TURN,
    MARKOVIAN_INSTRUCTION,
    MARKOVIAN_METHODS,
    MARKOVIAN_SCORERS,
    VQ_IGNORED,
    MarkovianConfig,
)

__all__ = [
    "COT_END_OF_TURN",
    "MARKOVIAN_INSTRUCTION",
    "MARKOVIAN_METHODS",
    "MARKOVIAN_SCORERS",
    "VQ_IGNORED",
    "MarkovianConfig",
]

warnings.warn(
    "implicit_reasoning.trainer.markovian_config moved to implicit_reasoning.trainer.markovian.config;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
