"""Moved to `implicit_reasoning.evaluation.choice`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.evaluation import choice

sys.modules[__name__] = choice
warnings.warn(
    "implicit_reasoning.utils.choice moved to implicit_reasoning.evaluation.choice;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
