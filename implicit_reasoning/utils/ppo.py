"""Moved to `implicit_reasoning.objectives.ppo`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.objectives import ppo

sys.modules[__name__] = ppo
warnings.warn(
    "implicit_reasoning.utils.ppo moved to implicit_reasoning.objectives.ppo;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
