"""Moved to `implicit_reasoning.trainer.core.config_sections`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.config_sections import (
    config_sections,
    docstring_sections,
)

__all__ = [
    "config_sections",
    "docstring_sections",
]

warnings.warn(
    "implicit_reasoning.trainer.config_sections moved to implicit_reasoning.trainer.core.config_sections;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
