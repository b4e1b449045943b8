"""Moved to `implicit_reasoning.trainer.core.models`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import models

sys.modules[__name__] = models
warnings.warn(
    "implicit_reasoning.trainer.models moved to implicit_reasoning.trainer.core.models;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
