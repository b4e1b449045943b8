"""Moved to `implicit_reasoning.objectives.latro`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.objectives import latro

sys.modules[__name__] = latro
warnings.warn(
    "implicit_reasoning.utils.latro moved to implicit_reasoning.objectives.latro;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
