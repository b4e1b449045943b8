"""Moved to `implicit_reasoning.trainer.markovian.config`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.markovian import config

sys.modules[__name__] = config
warnings.warn(
    "implicit_reasoning.trainer.markovian_config moved to implicit_reasoning.trainer.markovian.config;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
