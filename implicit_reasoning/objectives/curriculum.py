"""Difficulty-driven data curriculum: sampling weights w over K datasets (pure math, float64).

Each update takes one difficulty measurement per dataset, in list order: the mean loss mu_i
and the loss variance sigma2_i of a frozen model on a few of its prompts. Every rule ends with
``apply_floor(w, floor)`` so that w is a distribution with w_i >= floor. The first measurement
initialises the history: a rule that needs a previous measurement leaves w unchanged on it.

* ``"seed"`` (kept for fidelity to the original project)::

      m_i = mu_i + sigma2_i
      g_i = (m_{i+1} - m_{i-1}) / 2   inside,  g_0 = m_1 - m_0,  g_{K-1} = m_{K-1} - m_{K-2}
            (numpy.gradient along the dataset LIST INDEX; g = 0 when K = 1)
      w <- floor_(normalise(max(w + eta * g, 0)))     (uniform if every entry clipped to 0)

  The finite differences run along the position of a dataset in the list, so this rule
  DEPENDS ON THE ORDER OF THE DATASET LIST: reordering the list changes the result (it is not
  a permutation of the old one). It uses the current measurement only.

* ``"exp3"``: full-information Online Data Mixing (Albalak et al. 2023, EXP3); t = 1, 2, ...::

      R_i <- ALPHA * R_i + (1 - ALPHA) * mu_i          (R starts at 0)
      eps_t = min(1/K, sqrt(ln K / (K t)))
      w = floor_((1 - K eps_t) * softmax(eta * R) + K eps_t * w0)

  w0 = the configured (initial) weights: the exploration share follows them. With uniform w0
  this is the paper's ``+ eps_t``; while eps_t = 1/K (t <= K ln K, nothing learnt yet has a
  share) the weights ARE the configured ones, so a configured weight reaches the draws.
  Every dataset is measured at every update, so the reward needs no importance weighting by
  1/pi_i (the bandit form's estimator). Higher loss -> more weight.

* ``"learning_progress"`` (requires 0 < eta <= 1)::

      P_i <- ALPHA * P_i + (1 - ALPHA) * |mu_i(now) - mu_i(previous)|     (P starts at 0)
      target = P / sum(P)   (uniform if sum(P) = 0)
      w <- floor_((1 - eta) * w + eta * target)

  The first call only records mu. Datasets whose loss moves most get the most weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

CURRICULUM_RULES = ("seed", "exp3", "learning_progress")
ALPHA = 0.9  # smoothing of the exp3 reward estimate and of the learning-progress signal
DTYPE = torch.float64
Values = Sequence[float] | torch.Tensor  # one value per dataset, in list order


def apply_floor(weights: torch.Tensor, floor: float) -> torch.Tensor:
    """Smallest change making `weights` a distribution with every entry >= floor (water-filling).

    Normalise, then raise the entries below the floor to it and scale the others down
    proportionally, repeated until none is below. A distribution already >= floor comes back
    unchanged. Requires 0 <= floor <= 1/len(weights).
    """
    w = torch.as_tensor(weights, dtype=DTYPE, device="cpu").flatten().clone()
    k = w.numel()
    if k == 0 or not (0.0 <= floor <= 1.0 / k):
        raise ValueError(f"curriculum_floor must lie in [0, 1/K] = [0, {1.0 / max(k, 1)}] (K={k}), got {floor}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or not float(w.sum()) > 0:
        raise ValueError(f"weights must be finite, non-negative with a positive sum, got {w.tolist()}")
    w = w / w.sum()
    fixed = torch.zeros(k, dtype=torch.bool)
    while bool((w < floor).any()):
        fixed |= w < floor
        if bool(fixed.all()):
            return torch.full((k,), 1.0 / k, dtype=DTYPE)
        free_mass = 1.0 - floor * int(fixed.sum())
        free = w[~fixed]
        w = torch.where(fixed, torch.tensor(floor, dtype=DTYPE), w * (free_mass / free.sum()))
    return w


def draw_sources(weights: torch.Tensor, n: int, generator: torch.Generator) -> list[int]:
    """`n` dataset indices drawn i.i.d. from `weights` (multinomial with replacement, `generator`)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0:
        return []
    probs = torch.as_tensor(weights, dtype=DTYPE, device="cpu")
    return torch.multinomial(probs, n, replacement=True, generator=generator).tolist()


def _as_vector(values: Values, names: list[str], what: str) -> torch.Tensor:
    """`values` as a float64 (K,) tensor; ValueError naming the offending dataset otherwise."""
    v = torch.as_tensor(values, dtype=DTYPE, device="cpu").flatten()
    if v.numel() != len(names):
        raise ValueError(f"{what} has {v.numel()} values, expected one per dataset ({len(names)}: {names})")
    for name, x in zip(names, v.tolist()):
        if not math.isfinite(x):
            raise ValueError(f"{what} for dataset {name!r} is not finite ({x})")
    return v


class CurriculumWeights:
    """Sampling weights over named datasets, updated from difficulty measurements by `rule`."""

    def __init__(
        self, names: list[str], rule: str, eta: float, floor: float, initial: Sequence[float] | None = None
    ) -> None:
        if rule not in CURRICULUM_RULES:
            raise ValueError(f"curriculum_rule must be one of {CURRICULUM_RULES}, got {rule!r}")
        names = list(names)
        if not names or any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
            raise ValueError(f"datasets: the curriculum needs a non-empty list of unique non-empty names, got {names}")
        if not math.isfinite(eta) or eta < 0:
            raise ValueError(f"curriculum_eta must be >= 0, got {eta}")
        if rule == "learning_progress" and not 0 < eta <= 1:
            raise ValueError(f"curriculum_eta must lie in (0, 1] for rule 'learning_progress', got {eta}")
        k = len(names)
        if not 0.0 <= floor <= 1.0 / k:
            raise ValueError(f"curriculum_floor must lie in [0, 1/K] = [0, {1.0 / k}] (K={k}), got {floor}")
        self.names, self.rule, self.eta, self.floor = names, rule, float(eta), float(floor)
        if initial is None:
            start = torch.full((k,), 1.0 / k, dtype=DTYPE)
        else:
            start = torch.as_tensor(initial, dtype=DTYPE, device="cpu").flatten()
            if start.numel() != k or not bool(torch.isfinite(start).all()) or bool((start < 0).any()):
                raise ValueError(f"datasets: initial weights must be {k} finite non-negative values, got {initial}")
            if not float(start.sum()) > 0:
                raise ValueError(f"datasets: initial weights must have a positive sum, got {initial}")
        self.weights: torch.Tensor = apply_floor(start, self.floor)
        self.prior = self.weights.clone()  # the configured weights (configuration, like eta and floor)
        self.t = 0  # number of updates so far
        self.reward = torch.zeros(k, dtype=DTYPE)  # exp3: smoothed loss R
        self.progress = torch.zeros(k, dtype=DTYPE)  # learning_progress: smoothed |delta mu| P
        self.last_mu: torch.Tensor | None = None
        self.last_var: torch.Tensor | None = None

    def update(self, mean_loss: Values, loss_var: Values) -> torch.Tensor:
        """Apply one measurement (mu_i, sigma2_i per dataset, list order); return the new weights."""
        mu = _as_vector(mean_loss, self.names, "mean_loss")
        var = _as_vector(loss_var, self.names, "loss_var")
        k, previous = len(self.names), self.last_mu
        self.t += 1
        if self.rule == "seed":
            m = mu + var
            g = torch.zeros(k, dtype=DTYPE)
            if k > 1:
                g[0], g[-1] = m[1] - m[0], m[-1] - m[-2]
                g[1:-1] = (m[2:] - m[:-2]) / 2.0
            w = torch.clamp(self.weights + self.eta * g, min=0.0)
            self.weights = apply_floor(w if float(w.sum()) > 0 else torch.ones(k, dtype=DTYPE), self.floor)
        elif self.rule == "exp3":
            self.reward = ALPHA * self.reward + (1.0 - ALPHA) * mu
            eps = min(1.0 / k, math.sqrt(math.log(k) / (k * self.t)))
            pi = (1.0 - k * eps) * torch.softmax(self.eta * self.reward, dim=0) + k * eps * self.prior
            self.weights = apply_floor(pi, self.floor)
        elif previous is not None:  # learning_progress, from the second measurement on
            self.progress = ALPHA * self.progress + (1.0 - ALPHA) * (mu - previous).abs()
            total = float(self.progress.sum())
            target = self.progress / total if total > 0 else torch.full((k,), 1.0 / k, dtype=DTYPE)
            self.weights = apply_floor((1.0 - self.eta) * self.weights + self.eta * target, self.floor)
        self.last_mu, self.last_var = mu.clone(), var.clone()
        return self.weights.clone()

    def state_dict(self) -> dict:
        """JSON-serialisable state (python floats round-trip float64 exactly through json)."""
        return {
            "names": list(self.names),
            "rule": self.rule,
            "t": self.t,
            "weights": self.weights.tolist(),
            "reward": self.reward.tolist(),
            "progress": self.progress.tolist(),
            "last_mu": None if self.last_mu is None else self.last_mu.tolist(),
            "last_var": None if self.last_var is None else self.last_var.tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()` exactly; ValueError if its dataset names or rule differ from this object's.

        eta, floor and the configured weights (exp3's prior) are configuration, not state: this object's own
        values are kept (weights that a new, higher floor leaves below it are re-floored; otherwise they load
        bit-exact).
        """
        if list(state["names"]) != self.names:
            raise ValueError(f"curriculum state names {state['names']} do not match the datasets {self.names}")
        if state["rule"] != self.rule:
            raise ValueError(f"curriculum state rule {state['rule']!r} does not match curriculum_rule {self.rule!r}")

        def vec(key: str) -> torch.Tensor:
            return torch.tensor(state[key], dtype=DTYPE)

        self.t = int(state["t"])
        self.weights, self.reward, self.progress = vec("weights"), vec("reward"), vec("progress")
        self.last_mu = None if state["last_mu"] is None else vec("last_mu")
        self.last_var = None if state["last_var"] is None else vec("last_var")
        if bool((self.weights < self.floor).any()):
            self.weights = apply_floor(self.weights, self.floor)

    def metrics(self) -> dict[str, float]:
        """Per-dataset weight, and the last difficulty (mu) and variance once an update has run."""
        out = {f"curriculum/weight/{n}": float(w) for n, w in zip(self.names, self.weights.tolist())}
        if self.last_mu is not None and self.last_var is not None:
            out.update({f"curriculum/difficulty/{n}": float(x) for n, x in zip(self.names, self.last_mu.tolist())})
            out.update({f"curriculum/variance/{n}": float(x) for n, x in zip(self.names, self.last_var.tolist())})
        return out
