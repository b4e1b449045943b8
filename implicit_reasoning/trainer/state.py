"""Moved to `implicit_reasoning.trainer.core.state`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.state import (
    RUN_CONFIG_NAME,
    STATE_FILE,
    UNMASKED_TOKEN_FIELDS,
    CheckpointedState,
    SaveStateCallback,
    atomic_write,
    load_run_config,
    run_config_dict,
    save_run_config,
    write_text,
)

__all__ = [
    "RUN_CONFIG_NAME",
    "STATE_FILE",
    "UNMASKED_TOKEN_FIELDS",
    "CheckpointedState",
    "SaveStateCallback",
    "atomic_write",
    "load_run_config",
    "run_config_dict",
    "save_run_config",
    "write_text",
]

warnings.warn(
    "implicit_reasoning.trainer.state moved to implicit_reasoning.trainer.core.state;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
