"""Moved to `implicit_reasoning.trainer.core.curriculum_config`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import curriculum_config

sys.modules[__name__] = curriculum_config
warnings.warn(
    "implicit_reasoning.trainer.curriculum_config moved to implicit_reasoning.trainer.core.curriculum_config;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
