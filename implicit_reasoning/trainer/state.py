"""Moved to `implicit_reasoning.trainer.core.state`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import state

sys.modules[__name__] = state
warnings.warn(
    "implicit_reasoning.trainer.state moved to implicit_reasoning.trainer.core.state;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
