"""Moved to `implicit_reasoning.trainer.core.models`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.models import (
    ModelsMixin,
)

__all__ = [
    "ModelsMixin",
]

warnings.warn(
    "implicit_reasoning.trainer.models moved to implicit_reasoning.trainer.core.models;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
