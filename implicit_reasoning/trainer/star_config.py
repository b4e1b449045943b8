"""Moved to `implicit_reasoning.trainer.star.config`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.star import config

sys.modules[__name__] = config
warnings.warn(
    "implicit_reasoning.trainer.star_config moved to implicit_reasoning.trainer.star.config;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
