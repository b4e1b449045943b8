"""Moved to `implicit_reasoning.data.number_parsing`: re-exported here until the next release."""

import warnings

from implicit_reasoning.data.number_parsing import (
    canonical_number,
    numbers_in,
)

__all__ = [
    "canonical_number",
    "numbers_in",
]

warnings.warn(
    "implicit_reasoning.utils.number_parsing moved to implicit_reasoning.data.number_parsing;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
