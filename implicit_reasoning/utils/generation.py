"""Moved to `implicit_reasoning.generation.sampling`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.generation import sampling

sys.modules[__name__] = sampling
warnings.warn(
    "implicit_reasoning.utils.generation moved to implicit_reasoning.generation.sampling;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
