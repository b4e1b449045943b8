"""Moved to `implicit_reasoning.evaluation.accuracy`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.evaluation import accuracy

sys.modules[__name__] = accuracy
warnings.warn(
    "implicit_reasoning.utils.evaluation moved to implicit_reasoning.evaluation.accuracy;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
