"""Markovian Transformers (arXiv 2404.18988) objective as pure tensor functions, and its prompts.

Notation: x prompt, CoT a fixed-length chain of thought, y gold answer, K samples per
question laid out prompt-major (see :mod:`implicit_reasoning.objectives.advantages`).

Log-probs follow the window convention of :mod:`implicit_reasoning.scoring.window`:
``logits`` (B, W, V) and masks (B, W) cover the same W columns, and the logits at column
t-1 predict the token at column t (column 0 of a window is never a target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data.prompts import format_prompt
from ..runtime.models import encode_continuation, encode_prompt
from ..scoring.logprobs import masked_mean
from ..scoring.packing import pack_rows
from .advantages import group_zscore

ZSCORE_EPS = 1e-8
REDACTED = "<Redacted>"
ANSWER_MARKER = " Answer:"
REASONING_PREFIX = "Reasoning:"
# segments of a scoring row [x~; CoT; " Answer:"; " " + y] (pack_rows numbers segments from 1)
PREFIX, COT, MARKER, ANSWER = 1, 2, 3, 4


# ------------------------------------------------------------------------------- prompts
class MarkovianPrompts:
    """Token rows of the actor prompt and of the scoring context, under the one prompt rule.

    actor prompt x:   "{instruction} {question}" as user text, then `reasoning_prefix` ("Reasoning:")
    scoring context:  the same with the question replaced by "<Redacted>" (markovian=True),
                      followed by the CoT, `answer_marker` (" Answer:") and " " + answer
    The chat template applies to both when the tokenizer has one (`use_chat_template`).
    """

    def __init__(self, tokenizer, instruction: str, markovian: bool = True, use_chat_template: bool = True,
                 max_prompt_length: int = 10**6, reasoning_prefix: str = REASONING_PREFIX,
                 answer_marker: str = ANSWER_MARKER):
        self.tokenizer, self.instruction, self.markovian = tokenizer, instruction, markovian
        self.use_chat_template, self.max_prompt_length = use_chat_template, max_prompt_length
        self.reasoning_prefix, self.answer_marker = reasoning_prefix, answer_marker
        self.marker_ids = encode_continuation(tokenizer, answer_marker)

    def text(self, question: str, redact: bool = False) -> str:
        user = f"{self.instruction} {REDACTED if redact else question}"
        return format_prompt(self.tokenizer, user, self.reasoning_prefix, self.use_chat_template)

    def actor_ids(self, question: str) -> list[int]:
        return encode_prompt(self.tokenizer, self.text(question), self.max_prompt_length)

    def scoring_ids(self, question: str) -> list[int]:
        return encode_prompt(self.tokenizer, self.text(question, redact=self.markovian), self.max_prompt_length)

    def answer_ids(self, answer: str) -> list[int]:
        """ids(" " + answer): the space goes before the answer, never at the end of a prompt."""
        return encode_continuation(self.tokenizer, f" {str(answer).strip()}")

    def scoring_rows(self, prefixes: list[list[int]], cots: list[list[int]], answers: list[str]) -> dict:
        """Packed [x~; CoT; " Answer:"; " " + answer] rows, every CoT at the same columns."""
        markers = [self.marker_ids] * len(cots)
        rows = [prefixes, cots, markers, [self.answer_ids(a) for a in answers]]
        return pack_rows(rows, self.tokenizer.pad_token_id, align=COT - 1)

    def actor_rows(self, prompts: list[list[int]], cots: list[list[int]]) -> dict:
        """Packed [x; CoT] rows, every CoT at the same columns."""
        return pack_rows([prompts, cots], self.tokenizer.pad_token_id, align=COT - 1)


# ----------------------------------------------------------------------- log-prob terms
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


class EMABaseline:
    """Exponential moving baseline b over batches (K = 1): A = R - b, then b <- decay*b + (1-decay)*mean R.

    The first batch starts b at its own mean, so its advantages are centred. `batch_mean`
    lets the caller fold in the mean over all processes. Checkpointed via state_dict.
    """

    def __init__(self, decay: float):
        self.decay = decay
        self.value: float | None = None

    def advantages(self, rewards: torch.Tensor, batch_mean: float | None = None) -> torch.Tensor:
        mean = float(rewards.mean()) if batch_mean is None else float(batch_mean)
        b = mean if self.value is None else self.value
        self.value = self.decay * b + (1.0 - self.decay) * mean
        return rewards - b

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state.get("value")


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

    def load_state_dict(self, state: dict) -> None:
        self.count, self.total = int(state["count"]), float(state["total"])
        self.total_sq, self.batches = float(state["total_sq"]), int(state["batches"])


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


def ei_weights(kept: torch.Tensor, total: int | None = None, total_kept: int | None = None) -> torch.Tensor:
    """Per-sample weights n * kept / n_kept: a plain mean of weight * loss is the mean over kept samples.

    Under data parallelism each process averages its own rows and the gradients are then
    averaged over processes, so n and n_kept must be the GLOBAL counts (`total`, `total_kept`):
    every kept sample then has the same weight whichever process kept it.
    """
    n = kept.numel() if total is None else total
    n_kept = int(kept.sum()) if total_kept is None else total_kept
    return kept.float() * (n / max(n_kept, 1))


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
