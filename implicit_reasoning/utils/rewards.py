"""Moved to `implicit_reasoning.objectives.rewards`: re-exported here until the next release."""

import warnings

from implicit_reasoning.objectives.rewards import (
    BUILTIN_REWARDS,
    MODEL_REWARDS,
    REPEATED_NGRAM,
    ContinuationLogLikelihood,
    answer_accuracy,
    call_rewards,
    combine_rewards,
    import_reward,
    nonfinite_reward_names,
    repetition_penalty,
    repetition_rate,
    reward_name,
)

__all__ = [
    "BUILTIN_REWARDS",
    "MODEL_REWARDS",
    "REPEATED_NGRAM",
    "ContinuationLogLikelihood",
    "answer_accuracy",
    "call_rewards",
    "combine_rewards",
    "import_reward",
    "nonfinite_reward_names",
    "repetition_penalty",
    "repetition_rate",
    "reward_name",
]

warnings.warn(
    "implicit_reasoning.utils.rewards moved to implicit_reasoning.objectives.rewards;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
