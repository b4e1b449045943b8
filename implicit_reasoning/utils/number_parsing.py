"""Moved to `implicit_reasoning.data.number_parsing`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.data import number_parsing

sys.modules[__name__] = number_parsing
warnings.warn(
    "implicit_reasoning.utils.number_parsing moved to implicit_reasoning.data.number_parsing;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
