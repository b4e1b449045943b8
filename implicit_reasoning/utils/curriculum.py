"""Moved to `implicit_reasoning.objectives.curriculum`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.objectives import curriculum

sys.modules[__name__] = curriculum
warnings.warn(
    "implicit_reasoning.utils.curriculum moved to implicit_reasoning.objectives.curriculum;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
