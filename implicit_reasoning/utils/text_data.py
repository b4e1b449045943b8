"""Moved to `implicit_reasoning.data.raw_text`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.data import raw_text

sys.modules[__name__] = raw_text
warnings.warn(
    "implicit_reasoning.utils.text_data moved to implicit_reasoning.data.raw_text;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
