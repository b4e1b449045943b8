"""Moved to `implicit_reasoning.trainer.core.rollout_config`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import rollout_config

sys.modules[__name__] = rollout_config
warnings.warn(
    "implicit_reasoning.trainer.rollout_config moved to implicit_reasoning.trainer.core.rollout_config;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
