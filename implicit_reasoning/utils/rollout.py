"""Moved to `implicit_reasoning.objectives.advantages`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.objectives import advantages

sys.modules[__name__] = advantages
warnings.warn(
    "implicit_reasoning.utils.rollout moved to implicit_reasoning.objectives.advantages;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
