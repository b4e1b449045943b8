"""Moved to `implicit_reasoning.scoring.window`: re-exported here until the next release."""

import warnings

from implicit_reasoning.scoring.window import (
    PAD_SEGMENT,
    ROW_KEYS,
    SCALE_FIELDS,
    SOFTCAP_FIELDS,
    accepts_logits_to_keep,
    chunkable_head,
    forward_window,
    masked_mean,
    masked_sum,
    pack_rows,
    pack_segments,
    score_rows,
    score_segments,
    segment_reduce,
    selective_log_softmax,
    token_logprobs,
    token_normalizer,
    window_hidden,
    window_logprobs,
)

__all__ = [
    "PAD_SEGMENT",
    "ROW_KEYS",
    "SCALE_FIELDS",
    "SOFTCAP_FIELDS",
    "accepts_logits_to_keep",
    "chunkable_head",
    "forward_window",
    "masked_mean",
    "masked_sum",
    "pack_rows",
    "pack_segments",
    "score_rows",
    "score_segments",
    "segment_reduce",
    "selective_log_softmax",
    "token_logprobs",
    "token_normalizer",
    "window_hidden",
    "window_logprobs",
]

warnings.warn(
    "implicit_reasoning.utils.scoring moved to implicit_reasoning.scoring.window;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
