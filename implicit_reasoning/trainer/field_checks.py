"""Moved to `implicit_reasoning.trainer.core.field_checks`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.field_checks import (
    HF_BOUNDS,
    check_bounds,
    check_field_types,
)

__all__ = [
    "HF_BOUNDS",
    "check_bounds",
    "check_field_types",
]

warnings.warn(
    "implicit_reasoning.trainer.field_checks moved to implicit_reasoning.trainer.core.field_checks;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
