"""Moved to `implicit_reasoning.data.input_checks`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.data import input_checks

sys.modules[__name__] = input_checks
warnings.warn(
    "implicit_reasoning.utils.input_checks moved to implicit_reasoning.data.input_checks;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
