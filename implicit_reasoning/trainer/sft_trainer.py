"""Moved to `implicit_reasoning.trainer.sft.trainer`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.sft import trainer

sys.modules[__name__] = trainer
warnings.warn(
    "implicit_reasoning.trainer.sft_trainer moved to implicit_reasoning.trainer.sft.trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
