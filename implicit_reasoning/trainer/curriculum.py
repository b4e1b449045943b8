"""Moved to `implicit_reasoning.trainer.core.curriculum`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import curriculum

sys.modules[__name__] = curriculum
warnings.warn(
    "implicit_reasoning.trainer.curriculum moved to implicit_reasoning.trainer.core.curriculum;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
