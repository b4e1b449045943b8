"""Moved to `implicit_reasoning.trainer.markovian.trainer`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.markovian.trainer import (
    POLICY_LOSSES,
    MarkovianTrainer,
)

__all__ = [
    "POLICY_LOSSES",
    "MarkovianTrainer",
]

warnings.warn(
    "implicit_reasoning.trainer.markovian_trainer moved to implicit_reasoning.trainer.markovian.trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
