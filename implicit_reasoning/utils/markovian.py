"""Moved to `implicit_reasoning.objectives.markovian`: re-exported here until the next release."""

import warnings

from implicit_reasoning.objectives.markovian import (
    ANSWER_MARKER,
    REASONING_PREFIX,
    REDACTED,
    ZSCORE_EPS,
    EMABaseline,
    MarkovianPrompts,
    RewardHistory,
    ei_keep_mask,
    ei_weights,
    masked_entropy,
    masked_kl,
    policy_gradient_loss,
    ppo_clipped_loss,
    zscore_advantages,
)

__all__ = [
    "ANSWER_MARKER",
    "REASONING_PREFIX",
    "REDACTED",
    "ZSCORE_EPS",
    "EMABaseline",
    "MarkovianPrompts",
    "RewardHistory",
    "ei_keep_mask",
    "ei_weights",
    "masked_entropy",
    "masked_kl",
    "policy_gradient_loss",
    "ppo_clipped_loss",
    "zscore_advantages",
]

warnings.warn(
    "implicit_reasoning.utils.markovian moved to implicit_reasoning.objectives.markovian;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
