"""Moved to `implicit_reasoning.trainer.core.curriculum`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.curriculum import (
    MIXTURE_COLUMNS,
    Curriculum,
    load_mixture,
    row_losses,
    step_generator,
)

__all__ = [
    "MIXTURE_COLUMNS",
    "Curriculum",
    "load_mixture",
    "row_losses",
    "step_generator",
]

warnings.warn(
    "implicit_reasoning.trainer.curriculum moved to implicit_reasoning.trainer.core.curriculum;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
