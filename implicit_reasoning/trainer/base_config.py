"""Moved to `implicit_reasoning.trainer.core.base_config`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.base_config import (
    DEFAULT_EVAL_MAX_NEW_TOKENS,
    DTYPE_CHOICES,
    EVAL_ANSWER_TOKENS,
    REPORTERS_NEEDING,
    ReasoningPromptFields,
    SamplingFields,
    TrainerConfig,
    check,
    hub_token_to_environment,
    report_to_list,
)

__all__ = [
    "DEFAULT_EVAL_MAX_NEW_TOKENS",
    "DTYPE_CHOICES",
    "EVAL_ANSWER_TOKENS",
    "REPORTERS_NEEDING",
    "ReasoningPromptFields",
    "SamplingFields",
    "TrainerConfig",
    "check",
    "hub_token_to_environment",
    "report_to_list",
]

warnings.warn(
    "implicit_reasoning.trainer.base_config moved to implicit_reasoning.trainer.core.base_config;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
