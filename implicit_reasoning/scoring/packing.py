"""Packing: per-row token segments into one padded batch that a single forward pass scores.

:func:`pack_rows` concatenates per-row token segments ([x; z; y], [x~; CoT; " Answer:"; y], ...) into
padded (B, T) tensors with a ``segment_ids`` map. With ``align`` one segment starts at the same column in
every row (earlier segments are left-padded), so the LM head can skip every column before it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PAD_SEGMENT = 0  # segment id of padding; segment j of the input gets id j + 1
ROW_KEYS = ("input_ids", "attention_mask", "position_ids", "segment_ids")


def pack_rows(
    segments: Sequence[Sequence[Sequence[int]]], pad_token_id: int, align: int | None = None
) -> dict[str, torch.Tensor]:
    """Concatenate per-row token segments and pad.

    ``segments[s][i]`` is the token list of segment ``s`` of row ``i``. Rows are right-padded;
    with ``align=s`` the segments before ``s`` are left-padded so that segment ``s`` starts at
    the same column in every row. Returns (B, T) ``input_ids``, ``attention_mask``,
    ``position_ids`` (counting real tokens only, so left padding shifts nothing) and
    ``segment_ids`` (``s + 1`` on tokens of segment ``s``, 0 on padding).
    """
    rows = [[list(seg[i]) for seg in segments] for i in range(len(segments[0]))]
    lead = [sum(len(s) for s in row[:align]) for row in rows] if align is not None else [0] * len(rows)
    offset = [max(lead) - n for n in lead]
    width = max(o + sum(len(s) for s in row) for o, row in zip(offset, rows))
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    segment_ids = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        start = offset[i]
        for s, tokens in enumerate(row):
            input_ids[i, start : start + len(tokens)] = torch.as_tensor(tokens, dtype=torch.long)
            segment_ids[i, start : start + len(tokens)] = s + 1
            start += len(tokens)
    mask = (segment_ids != PAD_SEGMENT).long()
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "position_ids": (mask.cumsum(dim=1) - 1).clamp(min=0),
        "segment_ids": segment_ids,
    }


def pack_segments(segments, pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask, segment_ids)`` of :func:`pack_rows` (no alignment)."""
    rows = pack_rows(segments, pad_token_id)
    return rows["input_ids"], rows["attention_mask"], rows["segment_ids"]
