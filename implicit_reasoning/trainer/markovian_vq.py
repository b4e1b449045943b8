"""Moved to `implicit_reasoning.trainer.markovian.vq_trainer`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.markovian import vq_trainer

sys.modules[__name__] = vq_trainer
warnings.warn(
    "implicit_reasoning.trainer.markovian_vq moved to implicit_reasoning.trainer.markovian.vq_trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
