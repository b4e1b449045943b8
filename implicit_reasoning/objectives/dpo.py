"""DPO (Rafailov et al., arXiv 2305.18290) and DPO + NLL (iterative reasoning preference optimisation,
Pang et al., arXiv 2404.19733) on summed sequence log-probs, as pure functions.

    loss = -log sigma( beta * [ (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l)) ] )
           + rpo_alpha * NLL(y_w) / |y_w|

The metrics are TRL's: rewards/chosen = beta * (log pi(y_w) - log pi_ref(y_w)), rewards/rejected
likewise, rewards/margins = their difference, rewards/accuracies = share of pairs whose chosen
reward is higher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    chosen_nll: torch.Tensor | None = None,
    rpo_alpha: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Mean DPO loss over pairs, plus `rpo_alpha` x the mean length-normalised NLL of the chosen (`chosen_nll`: per
    pair, -mean over the chosen completion's tokens of log pi, as in the RPO paper; or one value, a token mean over
    all chosen tokens, as TRL's loss_type=["sigmoid", "sft"]). Returns the loss, its parts and TRL's metrics."""
    chosen_logratios = chosen_logps - ref_chosen_logps.detach()
    rejected_logratios = rejected_logps - ref_rejected_logps.detach()
    dpo = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios)).mean()
    loss = dpo
    out = {}
    if rpo_alpha > 0:
        if chosen_nll is None:
            raise ValueError("rpo_alpha > 0 needs chosen_nll (the chosen completions' mean token NLL)")
        out["nll_loss"] = chosen_nll.mean()
        loss = loss + rpo_alpha * out["nll_loss"]
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return {
        "loss": loss,
        "dpo_loss": dpo.detach(),
        **{k: v.detach() for k, v in out.items()},
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
    }
