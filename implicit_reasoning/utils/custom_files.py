"""Moved to `implicit_reasoning.data.custom_files`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.data import custom_files

sys.modules[__name__] = custom_files
warnings.warn(
    "implicit_reasoning.utils.custom_files moved to implicit_reasoning.data.custom_files;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
