"""Shared rollout utilities: advantages, truncation, packing and one-pass segment scoring.

Everything here is a pure function of tensors (the scoring helpers take a model but
never keep state), so each piece is unit-tested against hand-computed numbers.

Layout convention: a batch of N prompts sampled K times each is laid out
prompt-major, i.e. the K samples of prompt i sit at rows i*K ... i*K+K-1
(the layout of ``tensor.repeat_interleave(K, dim=0)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from trl.trainer.utils import selective_log_softmax

# Segment ids used by `pack_segments`: 0 marks padding, segment j of the input gets id j+1.
PAD_SEGMENT = 0


def _check_groups(values: torch.Tensor, k: int, name: str = "rewards") -> None:
    if values.dim() != 1:
        raise ValueError(f"`{name}` must be 1-D (N*K,), got shape {tuple(values.shape)}")
    if values.numel() % k != 0:
        raise ValueError(f"`{name}` has {values.numel()} entries, not a multiple of k={k}")


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """REINFORCE leave-one-out advantages within each group of K samples.

    A_j = r_j - (sum_{g != j} r_g) / (K - 1), computed per prompt group.
    """
    if k < 2:
        raise ValueError(f"rloo_advantages needs k >= 2 samples per prompt (a leave-one-out baseline), got k={k}")
    _check_groups(rewards, k)
    grouped = rewards.view(-1, k)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).view(-1)


def group_zscore(rewards: torch.Tensor, k: int, eps: float = 1e-8) -> torch.Tensor:
    """Within-group standardisation (R - mean_group) / (std_group + eps); std is the population std."""
    if k < 2:
        raise ValueError(f"group_zscore needs k >= 2 samples per group, got k={k}")
    _check_groups(rewards, k)
    grouped = rewards.view(-1, k)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True, unbiased=False)
    return ((grouped - mean) / (std + eps)).view(-1)


def find_stop_positions(
    responses: torch.Tensor, stop_token_ids: Sequence[int], stop_seqs: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Index of the earliest stop (stop token, or first token of a stop sequence) per row; -1 if none.

    A stop sequence only counts when it occurs whole inside the row: a prefix of it cut
    off by the end of the row does not stop the row.
    """
    batch, length = responses.shape
    hit = torch.zeros_like(responses, dtype=torch.bool)
    for token_id in stop_token_ids:
        hit |= responses == token_id
    for seq in stop_seqs:
        n = len(seq)
        if n == 0 or n > length:
            continue
        windows = responses.unfold(1, n, 1)  # (B, T-n+1, n)
        match = (windows == torch.as_tensor(list(seq), device=responses.device)).all(dim=-1)
        hit[:, : length - n + 1] |= match
    positions = torch.arange(length, device=responses.device).expand(batch, length)
    first = torch.where(hit, positions, torch.full_like(positions, length)).min(dim=1).values
    return torch.where(first == length, torch.full_like(first, -1), first)


def truncate_response(
    responses: torch.Tensor,
    stop_token_ids: Sequence[int],
    stop_seqs: Sequence[Sequence[int]],
    pad_token_id: int,
) -> torch.Tensor:
    """Replace the earliest stop (token or sequence start) and everything after it by `pad_token_id`."""
    stops = find_stop_positions(responses, stop_token_ids, stop_seqs)
    positions = torch.arange(responses.shape[1], device=responses.device).unsqueeze(0)
    cut = (stops.unsqueeze(1) >= 0) & (positions >= stops.unsqueeze(1))
    return responses.masked_fill(cut, pad_token_id)


def pack_segments(
    segments: Sequence[Sequence[Sequence[int]]], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate per-row token segments and right-pad.

    ``segments[s][i]`` is the token list of segment ``s`` of row ``i``. Returns
    ``(input_ids, attention_mask, segment_ids)``, all (B, T) with T the longest row;
    ``segment_ids`` is ``s + 1`` on tokens of segment ``s`` and 0 on padding. Right padding
    keeps real tokens at positions 0..len-1, so no position ids are needed.
    """
    rows = [[list(seg[i]) for seg in segments] for i in range(len(segments[0]))]
    length = max(sum(len(s) for s in row) for row in rows)
    input_ids = torch.full((len(rows), length), pad_token_id, dtype=torch.long)
    segment_ids = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        start = 0
        for s, tokens in enumerate(row):
            input_ids[i, start : start + len(tokens)] = torch.as_tensor(tokens, dtype=torch.long)
            segment_ids[i, start : start + len(tokens)] = s + 1
            start += len(tokens)
    return input_ids, (segment_ids != PAD_SEGMENT).long(), segment_ids


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """log p(token_t | tokens_<t) for every position t >= 1 from ONE forward; position 0 gets 0.

    Uses trl's ``selective_log_softmax`` so only the gathered (B, T) values outlive the call.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logps = selective_log_softmax(logits[:, :-1], input_ids[:, 1:])
    return torch.cat([logps.new_zeros(logps.shape[0], 1), logps], dim=1)


def segment_sums(token_logps: torch.Tensor, segment_ids: torch.Tensor, segment: int) -> torch.Tensor:
    """Sum of per-token log-probs over the tokens of one segment, per row."""
    return (token_logps * (segment_ids == segment)).sum(dim=1)


def segment_means(token_logps: torch.Tensor, segment_ids: torch.Tensor, segment: int) -> torch.Tensor:
    """Mean of per-token log-probs over the tokens of one segment, per row (0 for an empty segment)."""
    mask = segment_ids == segment
    return (token_logps * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


@torch.no_grad()
def score_segments(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    segment_ids: torch.Tensor,
    segments: Sequence[int],
    chunk_size: int,
) -> dict[int, torch.Tensor]:
    """Summed log-probs of several segments from one forward per row-chunk (no grad).

    Rows are processed ``chunk_size`` at a time, so the (chunk, T, V) logits are the
    largest tensor alive; each sequence is seen by the model exactly once.
    """
    sums: dict[int, list[torch.Tensor]] = {s: [] for s in segments}
    for start in range(0, input_ids.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        mask = attention_mask[rows]
        width = int(mask.sum(dim=1).max())  # drop columns that are padding in every row of the chunk
        logps = token_logprobs(model, input_ids[rows, :width], mask[:, :width])
        for s in segments:
            sums[s].append(segment_sums(logps, segment_ids[rows, :width], s))
    return {s: torch.cat(v) for s, v in sums.items()}
