"""Moved to `implicit_reasoning.trainer.ppo_curriculum.support`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.ppo_curriculum import support

sys.modules[__name__] = support
warnings.warn(
    "implicit_reasoning.trainer.ppo_support moved to implicit_reasoning.trainer.ppo_curriculum.support;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
