"""Moved to `implicit_reasoning.trainer.ppo_curriculum.data`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.ppo_curriculum.data import (
    PPO_COLUMNS,
    is_text_entry,
    load_entry_rows,
    text_rows,
)

__all__ = [
    "PPO_COLUMNS",
    "is_text_entry",
    "load_entry_rows",
    "text_rows",
]

warnings.warn(
    "implicit_reasoning.trainer.ppo_data moved to implicit_reasoning.trainer.ppo_curriculum.data;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
