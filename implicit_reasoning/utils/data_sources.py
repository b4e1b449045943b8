"""Moved to `implicit_reasoning.data.sources`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.data import sources

sys.modules[__name__] = sources
warnings.warn(
    "implicit_reasoning.utils.data_sources moved to implicit_reasoning.data.sources;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
