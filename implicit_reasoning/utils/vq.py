"""Moved to `implicit_reasoning.objectives.vq`: re-exported here until the next release."""

import warnings

from implicit_reasoning.objectives.vq import (
    codebook_loss,
    cosine_similarity_logits,
    quantize,
    select_codes,
    straight_through,
)

__all__ = [
    "codebook_loss",
    "cosine_similarity_logits",
    "quantize",
    "select_codes",
    "straight_through",
]

warnings.warn(
    "implicit_reasoning.utils.vq moved to implicit_reasoning.objectives.vq;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
