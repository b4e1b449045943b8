"""Moved to `implicit_reasoning.data.custom_files`: re-exported here until the next release."""

import warnings

from implicit_reasoning.data.custom_files import (
    FINISHED_PROMPT_COLUMNS,
    WARNED,
    builds_prompts,
    check_has_questions,
    example,
    required_columns,
    task_rows,
)

__all__ = [
    "FINISHED_PROMPT_COLUMNS",
    "WARNED",
    "builds_prompts",
    "check_has_questions",
    "example",
    "required_columns",
    "task_rows",
]

warnings.warn(
    "implicit_reasoning.utils.custom_files moved to implicit_reasoning.data.custom_files;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
