"""Moved to `implicit_reasoning.trainer.core.base_config`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import base_config

sys.modules[__name__] = base_config
warnings.warn(
    "implicit_reasoning.trainer.base_config moved to implicit_reasoning.trainer.core.base_config;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
