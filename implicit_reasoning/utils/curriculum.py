"""Moved to `implicit_reasoning.objectives.curriculum`: re-exported here until the next release."""

import warnings

from implicit_reasoning.objectives.curriculum import (
    ALPHA,
    CURRICULUM_RULES,
    DTYPE,
    CurriculumWeights,
    Values,
    apply_floor,
    draw_sources,
)

__all__ = [
    "ALPHA",
    "CURRICULUM_RULES",
    "DTYPE",
    "CurriculumWeights",
    "Values",
    "apply_floor",
    "draw_sources",
]

warnings.warn(
    "implicit_reasoning.utils.curriculum moved to implicit_reasoning.objectives.curriculum;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
