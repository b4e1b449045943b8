"""Moved to `implicit_reasoning.trainer.core.guard`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import guard

sys.modules[__name__] = guard
warnings.warn(
    "implicit_reasoning.trainer.guard moved to implicit_reasoning.trainer.core.guard;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
