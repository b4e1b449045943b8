"""Moved to `implicit_reasoning.scoring.packing`, `.logprobs` and `.window`: their public names, re-exported here
until the next release."""

import warnings

from implicit_reasoning.scoring.packing import (
    PAD_SEGMENT,
    ROW_KEYS,
    pack_rows,
    pack_segments,
)
from implicit_reasoning.scoring.logprobs import (
    masked_mean,
    masked_sum,
    segment_reduce,
    selective_log_softmax,
    token_logprobs,
    token_normalizer,
)
from implicit_reasoning.scoring.window import (
    SCALE_FIELDS,
    SOFTCAP_FIELDS,
    accepts_logits_to_keep,
    chunkable_head,
    forward_window,
    score_rows,
    score_segments,
    window_hidden,
    window_logprobs,
)

__all__ = [
    "PAD_SEGMENT",
    "ROW_KEYS",
    "pack_rows",
    "pack_segments",
    "masked_mean",
    "masked_sum",
    "segment_reduce",
    "selective_log_softmax",
    "token_logprobs",
    "token_normalizer",
    "SCALE_FIELDS",
    "SOFTCAP_FIELDS",
    "accepts_logits_to_keep",
    "chunkable_head",
    "forward_window",
    "score_rows",
    "score_segments",
    "window_hidden",
    "window_logprobs",
]

warnings.warn(
    "implicit_reasoning.utils.scoring moved to implicit_reasoning.scoring.packing, implicit_reasoning.scoring.logprobs,"
    " implicit_reasoning.scoring.window; the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
