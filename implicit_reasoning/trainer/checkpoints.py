"""Moved to `implicit_reasoning.trainer.core.checkpoints`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import checkpoints

sys.modules[__name__] = checkpoints
warnings.warn(
    "implicit_reasoning.trainer.checkpoints moved to implicit_reasoning.trainer.core.checkpoints;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
