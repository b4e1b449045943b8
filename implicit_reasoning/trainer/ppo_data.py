"""Moved to `implicit_reasoning.trainer.ppo_curriculum.data`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.ppo_curriculum import data

sys.modules[__name__] = data
warnings.warn(
    "implicit_reasoning.trainer.ppo_data moved to implicit_reasoning.trainer.ppo_curriculum.data;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
