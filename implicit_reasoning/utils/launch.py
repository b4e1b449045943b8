"""Moved to `implicit_reasoning.runtime.launch`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.runtime import launch

sys.modules[__name__] = launch
warnings.warn(
    "implicit_reasoning.utils.launch moved to implicit_reasoning.runtime.launch;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
