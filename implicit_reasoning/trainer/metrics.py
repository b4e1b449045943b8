"""Moved to `implicit_reasoning.trainer.core.metrics`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import metrics

sys.modules[__name__] = metrics
warnings.warn(
    "implicit_reasoning.trainer.metrics moved to implicit_reasoning.trainer.core.metrics;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
