"""Moved to `implicit_reasoning.runtime.launch`: re-exported here until the next release."""

import warnings

from implicit_reasoning.runtime.launch import (
    SHM_COMM_OP,
    SIZE_VARIABLES,
    bind_default_groups_early,
    check_single_process_launch,
    deepspeed_requested,
    has_accelerator_backend,
    launched_processes,
    settle_launch,
    skip_deepspeed_cpu_jit,
)

__all__ = [
    "SHM_COMM_OP",
    "SIZE_VARIABLES",
    "bind_default_groups_early",
    "check_single_process_launch",
    "deepspeed_requested",
    "has_accelerator_backend",
    "launched_processes",
    "settle_launch",
    "skip_deepspeed_cpu_jit",
]

warnings.warn(
    "implicit_reasoning.utils.launch moved to implicit_reasoning.runtime.launch;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
