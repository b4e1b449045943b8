"""PPO for language models, as pure functions of (B, T) token tensors (GAE is `objectives.advantages.gae`).

Notation: a row is one completion; ``mask`` marks its valid response tokens (right-padded);
``logps`` / ``old_logps`` / ``ref_logps`` are per-token log-probs of the sampled tokens under
the policy being trained, the policy that sampled them, and the frozen reference.

    per-token reward   r_t = -beta * (log pi_old - log pi_ref)_t  (+ the sequence score at the last token)
    policy loss        max(-A_t rho_t, -A_t clip(rho_t, 1 - eps, 1 + eps)),  rho_t = exp(log pi - log pi_old)
    value loss         0.5 * max((V - R)^2, (clip(V, V_old - eps_v, V_old + eps_v) - R)^2)
    KL controller      beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon)   (Ziegler et al. 2019)

Every reduction is float32 (or float64 for moments that are all-reduced across processes).
"""

from __future__ import annotations

import math

import torch

from ..scoring.logprobs import masked_mean

PROPORTIONAL_ERROR_CLIP = 0.2  # Ziegler et al.: the controller's relative error is clipped to +-0.2


def shaped_rewards(scores: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor,
                   kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token rewards, per-token KL): r_t = -beta * kl_t on every valid token, + score at the last one.

    kl_t = log pi_old(y_t) - log pi_ref(y_t) (the k1 estimator: its sum over a row estimates KL(pi || pi_ref)).
    A row with no valid token gets no reward.
    """
    m = mask.float()
    kl = (logps.float() - ref_logps.float()) * m
    rewards = -kl_coef * kl
    lengths = mask.long().sum(dim=1)
    rows = (lengths > 0).nonzero().squeeze(1)
    rewards[rows, lengths[rows] - 1] += scores.float()[rows]
    return rewards, kl


def masked_moments(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """float64 [sum, sum of squares, count] of the masked entries (sum it across processes, then `whiten`)."""
    v = values.double()[mask.bool()]
    return torch.stack([v.sum(), (v * v).sum(), v.new_tensor(float(v.numel()))])


def whiten(values: torch.Tensor, mask: torch.Tensor, moments: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(values - mean) / sqrt(var + eps) with the (possibly all-reduced) moments; 0 at masked positions.

    var is the unbiased variance, as TRL's masked_whiten uses.
    """
    total, squares, count = (float(x) for x in moments)
    mean = total / max(count, 1.0)
    var = (squares - count * mean * mean) / max(count - 1.0, 1.0)
    return ((values.float() - mean) * (1.0 / math.sqrt(max(var, 0.0) + eps))) * mask.float()


def masked_total(values: torch.Tensor, mask: torch.Tensor, normalizer: float) -> torch.Tensor:
    """float32 sum of the masked values / normalizer (the minibatch's token count: exact under accumulation)."""
    return (values.float() * mask.float()).sum() / normalizer


def policy_loss_terms(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
                      cliprange: float) -> dict[str, torch.Tensor]:
    """Per-token clipped surrogate loss, ratio, clipped indicator and approx KL (0.5 (log rho)^2)."""
    log_ratio = logps.float() - old_logps.float()
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    return {
        "loss": torch.maximum(unclipped, clipped),
        "ratio": ratio,
        "clipped": (clipped > unclipped).float(),
        "approxkl": 0.5 * log_ratio.pow(2),
    }


def value_loss_terms(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                     cliprange_value: float) -> dict[str, torch.Tensor]:
    """Per-token clipped value loss 0.5 * max((V - R)^2, (V_clip - R)^2) and its clipped indicator."""
    values = values.float()
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped, clipped = (values - returns).pow(2), (clipped_values - returns).pow(2)
    return {"loss": 0.5 * torch.maximum(unclipped, clipped), "clipped": (clipped > unclipped).float()}


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var[R - V] / Var[R] over the valid tokens (1 = perfect value function, <= 0 = no better than a constant)."""
    var_returns = masked_mean((returns - masked_mean(returns, mask)).pow(2), mask)
    if float(var_returns) == 0.0:
        return float("nan")
    residual = returns - values
    var_residual = masked_mean((residual - masked_mean(residual, mask)).pow(2), mask)
    return float(1.0 - var_residual / var_returns)


def value_moments(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """float64 [count, sum V, sum R, sum R^2, sum (R - V), sum (R - V)^2] over the valid tokens: sum them across
    processes, then `value_statistics` gives the rollout's statistics over all its tokens."""
    m = mask.bool()
    v, r = values.double()[m], returns.double()[m]
    d = r - v
    return torch.stack([v.new_tensor(float(v.numel())), v.sum(), r.sum(), (r * r).sum(), d.sum(), (d * d).sum()])


def value_statistics(moments: torch.Tensor) -> dict[str, float]:
    """Mean V, mean and (population) variance of R, and 1 - Var[R - V] / Var[R] (NaN when Var[R] = 0), from the
    (all-reduced) `value_moments`."""
    count, sum_v, sum_r, sum_r2, sum_d, sum_d2 = (float(x) for x in moments)
    count = max(count, 1.0)
    mean_r = sum_r / count
    var_r = max(sum_r2 / count - mean_r * mean_r, 0.0)
    var_d = max(sum_d2 / count - (sum_d / count) ** 2, 0.0)
    explained = 1.0 - var_d / var_r if var_r > 1e-12 * max(sum_r2 / count, 1e-300) else float("nan")
    return {"val/vpred": sum_v / count, "val/returns_mean": mean_r, "val/returns_var": var_r,
            "val/explained_variance": explained}


@torch.no_grad()
def token_entropy(logits: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """(B, W) float32 entropy of the next-token distribution at each position, `chunk` rows at a time."""
    out = torch.empty(logits.shape[:-1], dtype=torch.float32, device=logits.device)
    for start in range(0, logits.shape[0], chunk):
        logp = torch.log_softmax(logits[start : start + chunk].float(), dim=-1)
        out[start : start + chunk] = -(logp.exp() * logp).sum(dim=-1)
    return out


class KLController:
    """The KL coefficient beta: fixed, or adaptive toward `target` (Ziegler et al. 2019, eq. 2).

    `update(kl, n)` after every rollout with the rollout's mean sequence KL(pi || pi_ref) and the
    number of samples n it averaged (all processes): beta *= 1 + clip(kl/target - 1, +-0.2) * n / horizon.
    """

    def __init__(self, init: float, adaptive: bool, target: float | None, horizon: int):
        self.value, self.adaptive, self.target, self.horizon = float(init), adaptive, target, horizon

    def update(self, kl: float, n: int) -> float:
        if self.adaptive and math.isfinite(kl):
            error = min(max(kl / self.target - 1.0, -PROPORTIONAL_ERROR_CLIP), PROPORTIONAL_ERROR_CLIP)
            self.value *= 1.0 + error * n / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])
