"""Moved to `implicit_reasoning.objectives.markovian`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.objectives import markovian

sys.modules[__name__] = markovian
warnings.warn(
    "implicit_reasoning.utils.markovian moved to implicit_reasoning.objectives.markovian;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
