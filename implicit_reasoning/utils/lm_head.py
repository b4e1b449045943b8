"""Moved to `implicit_reasoning.scoring.lm_head`: re-exported here until the next release."""

import warnings

from implicit_reasoning.scoring.lm_head import (
    DEFAULT_CHUNK_BYTES,
    HeadGrads,
    chunked_head_logprobs,
    masked_head_logprobs,
    positions_per_chunk,
)

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "HeadGrads",
    "chunked_head_logprobs",
    "masked_head_logprobs",
    "positions_per_chunk",
]

warnings.warn(
    "implicit_reasoning.utils.lm_head moved to implicit_reasoning.scoring.lm_head;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
