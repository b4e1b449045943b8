"""Moved to `implicit_reasoning.scoring.scored_generation`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.scoring import scored_generation

sys.modules[__name__] = scored_generation
warnings.warn(
    "implicit_reasoning.utils.scored_generation moved to implicit_reasoning.scoring.scored_generation;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
