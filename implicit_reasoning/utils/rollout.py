"""Moved to `implicit_reasoning.objectives.advantages`: re-exported here until the next release."""

import warnings

from implicit_reasoning.objectives.advantages import (
    PAD_SEGMENT,
    find_stop_positions,
    gae,
    group_zscore,
    kept_lengths,
    pack_segments,
    repeat_rows,
    rloo_advantages,
    score_segments,
    truncate_response,
)

__all__ = [
    "PAD_SEGMENT",
    "find_stop_positions",
    "gae",
    "group_zscore",
    "kept_lengths",
    "pack_segments",
    "repeat_rows",
    "rloo_advantages",
    "score_segments",
    "truncate_response",
]

warnings.warn(
    "implicit_reasoning.utils.rollout moved to implicit_reasoning.objectives.advantages;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
