"""Moved to `implicit_reasoning.trainer.core.output_dir`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.output_dir import (
    LOCK_FILE,
    PREVIOUS_RUN_FILES,
    PREVIOUS_RUN_PREFIXES,
    OutputDirLocked,
    acquire,
    holds,
    locked,
    previous_run_files,
    refuse_earlier_run,
    release,
    truncate_step_log,
    truncate_step_logs,
)

__all__ = [
    "LOCK_FILE",
    "PREVIOUS_RUN_FILES",
    "PREVIOUS_RUN_PREFIXES",
    "OutputDirLocked",
    "acquire",
    "holds",
    "locked",
    "previous_run_files",
    "refuse_earlier_run",
    "release",
    "truncate_step_log",
    "truncate_step_logs",
]

warnings.warn(
    "implicit_reasoning.trainer.output_dir moved to implicit_reasoning.trainer.core.output_dir;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
