"""Markovian Transformers (arXiv 2404.18988) objective as pure tensor functions.

Notation: x prompt, CoT a fixed-length chain of thought, y gold answer, K samples per
question laid out prompt-major (see :mod:`implicit_reasoning.utils.rollout`).

Window convention (shared by every log-prob helper here): ``logits`` (B, W, V) and
``input_ids`` / masks (B, W) cover the same W columns of a packed row, and the logits at
column t-1 predict the token at column t. A ``target_mask`` marks the columns whose TOKEN
is scored, so column 0 of a window is never a target (its predictor is outside the window).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from trl.trainer.utils import selective_log_softmax

from .rollout import group_zscore

ZSCORE_EPS = 1e-8


# ------------------------------------------------------------------------------- packing
def pack_fixed_cot(
    prefixes: Sequence[Sequence[int]],
    cots: Sequence[Sequence[int]],
    markers: Sequence[Sequence[int]],
    answers: Sequence[Sequence[int]],
    pad_token_id: int,
) -> dict[str, torch.Tensor]:
    """Pack rows [prefix; CoT; marker; answer] so that every CoT occupies the same columns.

    Prefixes are left-padded to a common width P, the CoTs (all the same length L) fill
    columns P..P+L-1 and marker + answer are right-padded after them. Returns (B, T)
    ``input_ids``, ``attention_mask``, ``position_ids`` (counting real tokens only, so left
    padding does not shift positions) and boolean ``cot_mask`` / ``answer_mask``.
    """
    lengths = {len(c) for c in cots}
    if len(lengths) != 1:
        raise ValueError(f"pack_fixed_cot: every CoT must have the same length, got lengths {sorted(lengths)}")
    width_p = max(len(p) for p in prefixes)
    width_cot = lengths.pop()
    width = width_p + width_cot + max(len(m) + len(a) for m, a in zip(markers, answers))
    ids = torch.full((len(prefixes), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    answer_mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, (p, c, m, a) in enumerate(zip(prefixes, cots, markers, answers)):
        start = width_p - len(p)
        row = list(p) + list(c) + list(m) + list(a)
        ids[i, start : start + len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, start : start + len(row)] = 1
        answer_start = width_p + width_cot + len(m)
        answer_mask[i, answer_start : answer_start + len(a)] = True
    cot_mask = torch.zeros_like(answer_mask)
    cot_mask[:, width_p : width_p + width_cot] = True
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": position_ids,
        "cot_mask": cot_mask,
        "answer_mask": answer_mask,
    }


# ----------------------------------------------------------------------- log-prob terms
def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is set (over ``dim``, or all); 0 where nothing is set."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim=dim) / mask.sum(dim=dim).clamp(min=1)


def window_token_logps(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """(B, W) log p(token_t | logits_{t-1}); column 0 (no predictor in the window) is 0."""
    logps = selective_log_softmax(logits[:, :-1], input_ids[:, 1:]).float()
    return torch.cat([logps.new_zeros(logps.shape[0], 1), logps], dim=1)


def _row_means_of_selected(values: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Scatter per-position ``values`` (M,) back to the (B, W) ``selected`` grid and average per row."""
    full = values.new_zeros(selected.shape)
    full[selected] = values
    return masked_mean(full, selected, dim=1)


def masked_kl(actor_logits: torch.Tensor, critic_logits: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """Per-row mean over target tokens of KL(p_actor || p_critic) over the full vocabulary.

    The distribution over the token at column t is read from the logits at column t-1
    (aligned), and only columns with ``target_mask`` set count (padding never does).
    """
    selected = target_mask[:, 1:].bool()
    actor = torch.log_softmax(actor_logits[:, :-1][selected].float(), dim=-1)
    critic = torch.log_softmax(critic_logits[:, :-1][selected].float(), dim=-1)
    kl = (actor.exp() * (actor - critic)).sum(dim=-1)
    return _row_means_of_selected(kl, selected)


def masked_entropy(logits: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """Per-row mean over target tokens of the entropy H(p) of the (aligned) predicting distribution."""
    selected = target_mask[:, 1:].bool()
    logp = torch.log_softmax(logits[:, :-1][selected].float(), dim=-1)
    return _row_means_of_selected(-(logp.exp() * logp).sum(dim=-1), selected)


# ---------------------------------------------------------------------------- advantages
def zscore_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """A = (R - mean_group) / (std_group + 1e-8) within each prompt's K samples (population std)."""
    return group_zscore(rewards, k, eps=ZSCORE_EPS)


def ema_advantages(
    rewards: torch.Tensor, baseline: float | None, decay: float, batch_mean: float | None = None
) -> tuple[torch.Tensor, float]:
    """A = R - b with b the moving baseline of previous batches; then b <- decay*b + (1-decay)*mean R.

    The first batch (``baseline is None``) starts b at its own mean, so its advantages are
    centred. ``batch_mean`` (default: ``rewards.mean()``) lets the caller fold in the mean
    over all processes. Returns ``(A, new_baseline)``.
    """
    mean = float(rewards.mean()) if batch_mean is None else float(batch_mean)
    b = mean if baseline is None else float(baseline)
    return rewards - b, decay * b + (1.0 - decay) * mean


@dataclass
class RewardHistory:
    """Running count / sum / sum of squares of every reward seen: mean and (population) std exactly."""

    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    batches: int = 0

    def update(self, rewards: torch.Tensor) -> None:
        values = rewards.detach().double().flatten()
        self.count += values.numel()
        self.total += float(values.sum())
        self.total_sq += float((values * values).sum())
        self.batches += 1

    @property
    def mean(self) -> float:
        return self.total / max(self.count, 1)

    @property
    def std(self) -> float:
        return math.sqrt(max(self.total_sq / max(self.count, 1) - self.mean**2, 0.0))

    def state_dict(self) -> dict:
        return {"count": self.count, "total": self.total, "total_sq": self.total_sq, "batches": self.batches}

    @classmethod
    def from_state_dict(cls, state: dict) -> RewardHistory:
        return cls(int(state["count"]), float(state["total"]), float(state["total_sq"]), int(state["batches"]))


def ei_keep_mask(
    rewards: torch.Tensor, history: RewardHistory, ei_std: float, warmup: int
) -> tuple[torch.Tensor, float]:
    """Expert-iteration filter: keep R > mean + ei_std * std of the reward history.

    ``history`` must already include the current batch. While it holds ``warmup`` batches
    or fewer nothing is kept (the threshold is +inf): the statistics are still too noisy
    to say which samples are experts. Returns ``(kept bool mask, threshold)``.
    """
    if history.batches <= warmup:
        return torch.zeros_like(rewards, dtype=torch.bool), math.inf
    threshold = history.mean + ei_std * history.std
    return rewards > threshold, threshold


def ei_weights(kept: torch.Tensor) -> torch.Tensor:
    """Per-sample weights n * kept / n_kept: a plain mean of weight * loss is the mean over kept samples."""
    n_kept = int(kept.sum())
    return kept.float() * (kept.numel() / max(n_kept, 1))


# --------------------------------------------------------------------------------- losses
def policy_gradient_loss(token_logps: torch.Tensor, advantages: torch.Tensor, cot_mask: torch.Tensor) -> torch.Tensor:
    """-mean_i[ A_i * mean_t log pi(CoT_i,t) ] (A detached). With A = EI weights it is the EI loss."""
    return -(advantages.detach() * masked_mean(token_logps, cot_mask, dim=1)).mean()


def ppo_clipped_loss(
    token_logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    cot_mask: torch.Tensor,
    epsilon: float,
) -> dict[str, torch.Tensor]:
    """PPO surrogate per CoT token: -min(rho A, clip(rho, 1-eps, 1+eps) A), rho = exp(logp - logp_old).

    Averaged over the CoT tokens of a row, then over rows. Returns ``loss`` plus the mean
    ``ratio`` and the fraction of tokens where clipping was active (``clip_fraction``).
    """
    ratio = torch.exp(token_logps - old_logps.detach())
    adv = advantages.detach().unsqueeze(1)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - epsilon, 1.0 + epsilon) * adv
    loss = -masked_mean(torch.minimum(unclipped, clipped), cot_mask, dim=1).mean()
    active = (clipped < unclipped).float()
    return {
        "loss": loss,
        "ratio": masked_mean(ratio.detach(), cot_mask),
        "clip_fraction": masked_mean(active, cot_mask),
    }
