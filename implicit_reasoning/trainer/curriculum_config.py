"""Moved to `implicit_reasoning.trainer.core.curriculum_config`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.curriculum_config import (
    ENTRY_KEYS,
    CurriculumFields,
    entry_label,
    normalize_entry,
)

__all__ = [
    "ENTRY_KEYS",
    "CurriculumFields",
    "entry_label",
    "normalize_entry",
]

warnings.warn(
    "implicit_reasoning.trainer.curriculum_config moved to implicit_reasoning.trainer.core.curriculum_config;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
