"""Moved to `implicit_reasoning.trainer.ppo_curriculum.trainer`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.ppo_curriculum.trainer import (
    ROW_KEYS,
    TOKEN_KEYS,
    PPOCurriculumTrainer,
)

__all__ = [
    "ROW_KEYS",
    "TOKEN_KEYS",
    "PPOCurriculumTrainer",
]

warnings.warn(
    "implicit_reasoning.trainer.ppo_curriculum_trainer moved to implicit_reasoning.trainer.ppo_curriculum.trainer;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
