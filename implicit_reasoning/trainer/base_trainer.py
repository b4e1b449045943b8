"""Moved to `implicit_reasoning.trainer.core.base_trainer`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import base_trainer

sys.modules[__name__] = base_trainer
warnings.warn(
    "implicit_reasoning.trainer.base_trainer moved to implicit_reasoning.trainer.core.base_trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
