"""Moved to `implicit_reasoning.data.word_problems`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.data import word_problems

sys.modules[__name__] = word_problems
warnings.warn(
    "implicit_reasoning.utils.word_problems moved to implicit_reasoning.data.word_problems;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
