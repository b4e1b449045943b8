"""Moved to `implicit_reasoning.trainer.core.rollout_trainer`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import rollout_trainer

sys.modules[__name__] = rollout_trainer
warnings.warn(
    "implicit_reasoning.trainer.rollout_trainer moved to implicit_reasoning.trainer.core.rollout_trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
