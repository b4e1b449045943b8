"""Every config class in one import: `TrainerConfig` (shared fields) and one config per trainer.

Each config lives beside its trainer (`latro/config.py`, `markovian/config.py`, ...);
this module keeps `from implicit_reasoning.trainer.trainer_config import LatroConfig` working.
"""

from .core.base_config import (
    DTYPE_CHOICES,
    ReasoningPromptFields,
    SamplingFields,
    TrainerConfig,
)
from .core.curriculum_config import CurriculumFields
from .core.rollout_config import GroupRolloutConfig, RolloutConfig
from .latro.config import DEFAULT_STOP_SEQS, STOP_TOKEN_CHOICES, LatroConfig
from .markovian.config import (
    MARKOVIAN_INSTRUCTION,
    MARKOVIAN_METHODS,
    MARKOVIAN_SCORERS,
    MarkovianConfig,
)
from .ppo_curriculum.config import PPOCurriculumConfig
from .sft.config import SFTBaselineConfig
from .star.config import STAR_STRATEGIES, STaRConfig

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
