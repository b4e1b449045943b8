"""Moved to `implicit_reasoning.runtime.quiet`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.runtime import quiet

sys.modules[__name__] = quiet
warnings.warn(
    "implicit_reasoning.utils.quiet moved to implicit_reasoning.runtime.quiet;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
