"""Moved to `implicit_reasoning.trainer.ppo_curriculum.support`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.ppo_curriculum.support import (
    RESPONSE,
    TEST_GENERATIONS_FILE,
    PPOSupport,
)

__all__ = [
    "RESPONSE",
    "TEST_GENERATIONS_FILE",
    "PPOSupport",
]

warnings.warn(
    "implicit_reasoning.trainer.ppo_support moved to implicit_reasoning.trainer.ppo_curriculum.support;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
