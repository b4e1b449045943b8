"""Moved to `implicit_reasoning.trainer.core.config_sections`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import config_sections

sys.modules[__name__] = config_sections
warnings.warn(
    "implicit_reasoning.trainer.config_sections moved to implicit_reasoning.trainer.core.config_sections;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
