"""Moved to `implicit_reasoning.trainer.core.checkpoints`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.checkpoints import (
    COMPLETE_FILE,
    CRASH_ENV,
    CheckpointMixin,
    checkpoint_dirs,
    crash_point,
    incomplete_reason,
    last_complete_checkpoint,
    mark_complete,
    resolve_resume,
    rotate,
)

__all__ = [
    "COMPLETE_FILE",
    "CRASH_ENV",
    "CheckpointMixin",
    "checkpoint_dirs",
    "crash_point",
    "incomplete_reason",
    "last_complete_checkpoint",
    "mark_complete",
    "resolve_resume",
    "rotate",
]

warnings.warn(
    "implicit_reasoning.trainer.checkpoints moved to implicit_reasoning.trainer.core.checkpoints;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
