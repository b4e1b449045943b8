"""Moved to `implicit_reasoning.scoring.scored_generation`: re-exported here until the next release."""

import warnings

from implicit_reasoning.scoring.scored_generation import (
    CacheReuseError,
    LogprobRecorder,
    ScoredGeneration,
    SuppressUntil,
    continue_cache,
    generate_scored,
)

__all__ = [
    "CacheReuseError",
    "LogprobRecorder",
    "ScoredGeneration",
    "SuppressUntil",
    "continue_cache",
    "generate_scored",
]

warnings.warn(
    "implicit_reasoning.utils.scored_generation moved to implicit_reasoning.scoring.scored_generation;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
