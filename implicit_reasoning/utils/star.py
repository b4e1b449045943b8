"""Moved to `implicit_reasoning.objectives.star`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.objectives import star

sys.modules[__name__] = star
warnings.warn(
    "implicit_reasoning.utils.star moved to implicit_reasoning.objectives.star;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
