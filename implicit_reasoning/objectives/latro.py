"""LaTRO objective (arXiv 2411.04282) as pure tensor functions.

Notation: x prompt, z sampled rationale, y gold answer, K = samples per prompt, rows
laid out prompt-major (see `implicit_reasoning.objectives.advantages`).
"""

from __future__ import annotations

import torch

from .advantages import rloo_advantages


def non_stop_penalised(answer_logps: torch.Tensor, stopped: torch.Tensor, k: int, penalty: float) -> torch.Tensor:
    """Replace R of rationales that never stopped by ``penalty`` x the mean R of their own prompt group.

    R = log pi(y|x,z) <= 0, so with penalty > 1 a non-stopped sample scores worse than its
    group's average. The group mean is taken over all K samples' original R.
    """
    group_mean = answer_logps.view(-1, k).mean(dim=1, keepdim=True).expand(-1, k).reshape(-1)
    return torch.where(stopped, answer_logps, penalty * group_mean)


def latro_rewards(
    answer_logps: torch.Tensor,
    policy_rationale_logps: torch.Tensor,
    ref_rationale_logps: torch.Tensor,
    stopped: torch.Tensor,
    k: int,
    kl_coef: float,
    non_stop_penalty: bool = True,
    penalty_reward_value: float = 2.0,
) -> dict[str, torch.Tensor]:
    """r = R - beta * (log pi(z|x) - log pi_ref(z|x)), with R = log pi(y|x,z) (after the non-stop penalty).

    Returns the per-sample tensors ``R``, ``kl``, ``r`` and the RLOO advantage ``A`` of r.
    """
    reward = answer_logps
    if non_stop_penalty:
        reward = non_stop_penalised(answer_logps, stopped, k, penalty_reward_value)
    kl = policy_rationale_logps - ref_rationale_logps
    total = reward - kl_coef * kl
    return {"R": reward, "kl": kl, "r": total, "A": rloo_advantages(total, k)}


def latro_loss(
    advantages: torch.Tensor, rationale_logps: torch.Tensor, answer_logps: torch.Tensor, sft_coef: float
) -> dict[str, torch.Tensor]:
    """Loss = -mean_k[ A_k * log pi(z_k|x) + sft_coef * log pi(y|x,z_k) ]  (A detached).

    Returns the total ``loss`` and its two parts ``policy_loss`` and ``answer_loss``.
    """
    policy_loss = -(advantages.detach() * rationale_logps).mean()
    answer_loss = -answer_logps.mean()
    return {"loss": policy_loss + sft_coef * answer_loss, "policy_loss": policy_loss, "answer_loss": answer_loss}
