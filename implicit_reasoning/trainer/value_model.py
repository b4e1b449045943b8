"""Moved to `implicit_reasoning.trainer.ppo_curriculum.value_model`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.ppo_curriculum.value_model import (
    HEAD_FILE,
    VALUE_DIR,
    PolicyAndValue,
    ValueModel,
    backbone_of,
    backbone_peft_config,
    load_weights,
)

__all__ = [
    "HEAD_FILE",
    "VALUE_DIR",
    "PolicyAndValue",
    "ValueModel",
    "backbone_of",
    "backbone_peft_config",
    "load_weights",
]

warnings.warn(
    "implicit_reasoning.trainer.value_model moved to implicit_reasoning.trainer.ppo_curriculum.value_model;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
