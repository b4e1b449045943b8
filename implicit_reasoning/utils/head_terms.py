"""Moved to `implicit_reasoning.scoring.head_terms`: re-exported here until the next release."""

import warnings

from implicit_reasoning.scoring.head_terms import (
    chunked_head_terms,
    window_head_terms,
)

__all__ = [
    "chunked_head_terms",
    "window_head_terms",
]

warnings.warn(
    "implicit_reasoning.utils.head_terms moved to implicit_reasoning.scoring.head_terms;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
