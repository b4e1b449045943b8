"""Moved to `implicit_reasoning.trainer.core.guard`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.guard import (
    GuardCallback,
    NonFiniteUpdatesError,
    SkipAwareScheduler,
    UpdateGuard,
    gradients_finite,
    guard_optimizer_step,
)

__all__ = [
    "GuardCallback",
    "NonFiniteUpdatesError",
    "SkipAwareScheduler",
    "UpdateGuard",
    "gradients_finite",
    "guard_optimizer_step",
]

warnings.warn(
    "implicit_reasoning.trainer.guard moved to implicit_reasoning.trainer.core.guard;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
