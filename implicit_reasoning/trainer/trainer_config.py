"""Every config class in one import: `TrainerConfig` (shared fields) and one config per trainer.

Each config lives beside its trainer (`latro_config.py`, `markovian_config.py`, ...);
this module keeps `from implicit_reasoning.trainer.trainer_config import LatroConfig` working.
"""

from .base_config import (
    DTYPE_CHOICES,
    ReasoningPromptFields,
    SamplingFields,
    TrainerConfig,
)
from .curriculum_config import CurriculumFields
from .latro_config import DEFAULT_STOP_SEQS, STOP_TOKEN_CHOICES, LatroConfig
from .markovian_config import (
    MARKOVIAN_INSTRUCTION,
    MARKOVIAN_METHODS,
    MARKOVIAN_SCORERS,
    MarkovianConfig,
)
from .ppo_curriculum_config import PPOCurriculumConfig
from .rollout_config import GroupRolloutConfig, RolloutConfig
from .sft_config import SFTBaselineConfig
from .star_config import STAR_STRATEGIES, STaRConfig

__all__ = [
    "DEFAULT_STOP_SEQS",
    "DTYPE_CHOICES",
    "MARKOVIAN_INSTRUCTION",
    "MARKOVIAN_METHODS",
    "MARKOVIAN_SCORERS",
    "STAR_STRATEGIES",
    "STOP_TOKEN_CHOICES",
    "CurriculumFields",
    "GroupRolloutConfig",
    "LatroConfig",
    "MarkovianConfig",
    "PPOCurriculumConfig",
    "ReasoningPromptFields",
    "RolloutConfig",
    "SFTBaselineConfig",
    "STaRConfig",
    "SamplingFields",
    "TrainerConfig",
]
