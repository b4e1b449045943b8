"""Moved to `implicit_reasoning.trainer.core.rollout_config`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.rollout_config import (
    GroupRolloutConfig,
    RolloutConfig,
)

__all__ = [
    "GroupRolloutConfig",
    "RolloutConfig",
]

warnings.warn(
    "implicit_reasoning.trainer.rollout_config moved to implicit_reasoning.trainer.core.rollout_config;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
