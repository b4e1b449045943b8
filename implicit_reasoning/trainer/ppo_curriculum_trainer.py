"""Moved to `implicit_reasoning.trainer.ppo_curriculum.trainer`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.ppo_curriculum import trainer

sys.modules[__name__] = trainer
warnings.warn(
    "implicit_reasoning.trainer.ppo_curriculum_trainer moved to implicit_reasoning.trainer.ppo_curriculum.trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
