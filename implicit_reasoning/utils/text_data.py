"""Moved to `implicit_reasoning.data.raw_text`: re-exported here until the next release."""

import warnings

from implicit_reasoning.data.raw_text import (
    load_text_dataset,
)

__all__ = [
    "load_text_dataset",
]

warnings.warn(
    "implicit_reasoning.utils.text_data moved to implicit_reasoning.data.raw_text;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
