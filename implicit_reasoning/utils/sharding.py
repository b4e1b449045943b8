"""Moved to `implicit_reasoning.runtime.sharding`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.runtime import sharding

sys.modules[__name__] = sharding
warnings.warn(
    "implicit_reasoning.utils.sharding moved to implicit_reasoning.runtime.sharding;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
