"""Moved to `implicit_reasoning.runtime.sharding`: re-exported here until the next release."""

import warnings

from implicit_reasoning.runtime.sharding import (
    clone_model,
    copy_weights,
    gathered,
    is_partitioned,
)

__all__ = [
    "clone_model",
    "copy_weights",
    "gathered",
    "is_partitioned",
]

warnings.warn(
    "implicit_reasoning.utils.sharding moved to implicit_reasoning.runtime.sharding;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
