"""Moved to `implicit_reasoning.objectives.ppo`: re-exported here until the next release."""

import warnings

from implicit_reasoning.objectives.ppo import (
    PROPORTIONAL_ERROR_CLIP,
    KLController,
    explained_variance,
    masked_moments,
    masked_total,
    policy_loss_terms,
    shaped_rewards,
    token_entropy,
    value_loss_terms,
    whiten,
)

__all__ = [
    "PROPORTIONAL_ERROR_CLIP",
    "KLController",
    "explained_variance",
    "masked_moments",
    "masked_total",
    "policy_loss_terms",
    "shaped_rewards",
    "token_entropy",
    "value_loss_terms",
    "whiten",
]

warnings.warn(
    "implicit_reasoning.utils.ppo moved to implicit_reasoning.objectives.ppo;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
