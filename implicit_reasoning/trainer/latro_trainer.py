"""Moved to `implicit_reasoning.trainer.latro.trainer`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.latro import trainer

sys.modules[__name__] = trainer
warnings.warn(
    "implicit_reasoning.trainer.latro_trainer moved to implicit_reasoning.trainer.latro.trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
