"""Moved to `implicit_reasoning.data.prompts`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.data import prompts

sys.modules[__name__] = prompts
warnings.warn(
    "implicit_reasoning.utils.prompts moved to implicit_reasoning.data.prompts;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
