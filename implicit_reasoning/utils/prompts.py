"""Moved to `implicit_reasoning.data.prompts`: re-exported here until the next release."""

import warnings

from implicit_reasoning.data.prompts import (
    DEFAULT_COT_TRIGGER,
    format_prompt,
    question_text,
)

__all__ = [
    "DEFAULT_COT_TRIGGER",
    "format_prompt",
    "question_text",
]

warnings.warn(
    "implicit_reasoning.utils.prompts moved to implicit_reasoning.data.prompts;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
