"""Moved to `implicit_reasoning.scoring.head_terms`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.scoring import head_terms

sys.modules[__name__] = head_terms
warnings.warn(
    "implicit_reasoning.utils.head_terms moved to implicit_reasoning.scoring.head_terms;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
