"""Moved to `implicit_reasoning.data.registry`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.data import registry

sys.modules[__name__] = registry
warnings.warn(
    "implicit_reasoning.utils.data_utils moved to implicit_reasoning.data.registry;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
