"""Moved to `implicit_reasoning.evaluation.accuracy`: re-exported here until the next release."""

import warnings

from implicit_reasoning.evaluation.accuracy import (
    cut_off_rows,
    eval_generation_config,
    evaluate_dataset,
    majority_fields,
    shard_indices,
    summarize_records,
)

__all__ = [
    "cut_off_rows",
    "eval_generation_config",
    "evaluate_dataset",
    "majority_fields",
    "shard_indices",
    "summarize_records",
]

warnings.warn(
    "implicit_reasoning.utils.evaluation moved to implicit_reasoning.evaluation.accuracy;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
