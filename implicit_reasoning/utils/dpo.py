"""Moved to `implicit_reasoning.objectives.dpo`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.objectives import dpo

sys.modules[__name__] = dpo
warnings.warn(
    "implicit_reasoning.utils.dpo moved to implicit_reasoning.objectives.dpo;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
