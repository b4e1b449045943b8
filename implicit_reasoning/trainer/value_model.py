"""Moved to `implicit_reasoning.trainer.ppo_curriculum.value_model`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.ppo_curriculum import value_model

sys.modules[__name__] = value_model
warnings.warn(
    "implicit_reasoning.trainer.value_model moved to implicit_reasoning.trainer.ppo_curriculum.value_model;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
