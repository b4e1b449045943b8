"""Shared rollout utilities: advantages (RLOO, z-score, GAE) and truncation (pure functions of tensors).

Packing lives in :mod:`implicit_reasoning.scoring.packing` and one-pass segment scoring in
:mod:`implicit_reasoning.scoring.window`;
`pack_segments` and `score_segments` are re-exported here, where SPEC section 2.3 names them.

Layout convention: a batch of N prompts sampled K times each is laid out
prompt-major, i.e. the K samples of prompt i sit at rows i*K ... i*K+K-1
(the layout of ``tensor.repeat_interleave(K, dim=0)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..scoring.packing import PAD_SEGMENT, pack_segments
from ..scoring.window import score_segments

__all__ = [
    "PAD_SEGMENT",
    "find_stop_positions",
    "gae",
    "group_zscore",
    "pack_segments",
    "repeat_rows",
    "rloo_advantages",
    "score_segments",
    "truncate_response",
]


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


def kept_lengths(responses: torch.Tensor, stop_token_ids: Sequence[int], stop_seqs: Sequence[Sequence[int]]):
    """Tokens kept per row once cut at the earliest stop (the stop excluded); the whole row if none."""
    stops = find_stop_positions(responses, stop_token_ids, stop_seqs)
    return torch.where(stops >= 0, stops, torch.full_like(stops, responses.shape[1]))


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


def repeat_rows(rows: Sequence, k: int) -> list:
    """Each row K times in a row: the prompt-major layout of a list (``repeat_interleave`` for lists)."""
    return [row for row in rows for _ in range(k)]


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the TOKENS of each row (Schulman et al. 2016).

    ``rewards``, ``values`` and ``mask`` are (B, T); ``mask`` marks the valid response tokens,
    right-padded (a prefix of each row). With V = 0 after a row's last valid token:

        delta_t = r_t + gamma * V_{t+1} - V_t
        A_t     = delta_t + gamma * lam * A_{t+1}
        R_t     = A_t + V_t                  (the value target)

    Returns float32 ``(advantages, returns)``, both 0 at masked positions.
    """
    if not (rewards.shape == values.shape == mask.shape) or rewards.dim() != 2:
        raise ValueError(f"gae: rewards {tuple(rewards.shape)}, values {tuple(values.shape)} and mask "
                         f"{tuple(mask.shape)} must be the same (B, T) shape")
    valid = mask.bool()
    if (valid[:, 1:] & ~valid[:, :-1]).any():
        raise ValueError("gae: mask must be right-padded (the valid tokens of a row are a prefix of it)")
    m = valid.float()
    r, v = rewards.float() * m, values.float() * m
    advantages = torch.zeros_like(r)
    next_value = torch.zeros_like(r[:, 0])
    next_advantage = torch.zeros_like(r[:, 0])
    for t in reversed(range(r.shape[1])):
        delta = r[:, t] + gamma * next_value - v[:, t]
        advantages[:, t] = (delta + gamma * lam * next_advantage) * m[:, t]
        next_value, next_advantage = v[:, t], advantages[:, t]
    return advantages, (advantages + v) * m
