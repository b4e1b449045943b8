"""Moved to `implicit_reasoning.trainer.ppo_curriculum.config`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.ppo_curriculum.config import (
    PPOCurriculumConfig,
)

__all__ = [
    "PPOCurriculumConfig",
]

warnings.warn(
    "implicit_reasoning.trainer.ppo_curriculum_config moved to implicit_reasoning.trainer.ppo_curriculum.config;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
