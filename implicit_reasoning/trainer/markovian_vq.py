"""Moved to `implicit_reasoning.trainer.markovian.vq_trainer`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.markovian.vq_trainer import (
    MarkovianVQTrainer,
)

__all__ = [
    "MarkovianVQTrainer",
]

warnings.warn(
    "implicit_reasoning.trainer.markovian_vq moved to implicit_reasoning.trainer.markovian.vq_trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
