"""Moved to `implicit_reasoning.objectives.star`: re-exported here until the next release."""

import warnings

from implicit_reasoning.objectives.star import (
    DEGENERATE_COVERAGE,
    DEGENERATE_MIN_TOKENS,
    HINT_TEMPLATE,
    MAX_NGRAM,
    degeneration_rate,
    dpo_pairs,
    is_degenerate,
    is_finished,
    kept,
    locate_step,
    repetition_coverage,
    step_schedule,
    unsolved,
    update_rows,
    with_hint,
)

__all__ = [
    "DEGENERATE_COVERAGE",
    "DEGENERATE_MIN_TOKENS",
    "HINT_TEMPLATE",
    "MAX_NGRAM",
    "degeneration_rate",
    "dpo_pairs",
    "is_degenerate",
    "is_finished",
    "kept",
    "locate_step",
    "repetition_coverage",
    "step_schedule",
    "unsolved",
    "update_rows",
    "with_hint",
]

warnings.warn(
    "implicit_reasoning.utils.star moved to implicit_reasoning.objectives.star;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
