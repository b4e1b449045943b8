"""Moved to `implicit_reasoning.runtime.models`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.runtime import models

sys.modules[__name__] = models
warnings.warn(
    "implicit_reasoning.utils.model_utils moved to implicit_reasoning.runtime.models;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
