"""Moved to `implicit_reasoning.objectives.rewards`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.objectives import rewards

sys.modules[__name__] = rewards
warnings.warn(
    "implicit_reasoning.utils.rewards moved to implicit_reasoning.objectives.rewards;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
