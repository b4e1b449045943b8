"""Moved to `implicit_reasoning.runtime.kv_cache`: re-exported here until the next release."""

import warnings

from implicit_reasoning.runtime.kv_cache import (
    MIN_SAVED_TOKENS,
    cache_argument,
    distinct_rows,
    expansion_problem,
    generation_prompt_cache,
    in_generation_prefill,
    output_cache,
    prefix_cached_kwargs,
    shared_prefix_cache,
)

__all__ = [
    "MIN_SAVED_TOKENS",
    "cache_argument",
    "distinct_rows",
    "expansion_problem",
    "generation_prompt_cache",
    "in_generation_prefill",
    "output_cache",
    "prefix_cached_kwargs",
    "shared_prefix_cache",
]

warnings.warn(
    "implicit_reasoning.utils.kv_cache moved to implicit_reasoning.runtime.kv_cache;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
