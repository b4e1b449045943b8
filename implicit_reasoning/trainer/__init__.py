"""Trainers and their configs.

`TRAINERS` maps the `--trainer` name to (trainer class, config class);
`trainer_class(name, config)` gives the class that runs a config (a Markovian config with
`use_vq=True` runs `MarkovianVQTrainer`).
"""

from .base_trainer import BaseTrainer
from .curriculum_config import CurriculumFields
from .latro_trainer import LatroTrainer
from .markovian_trainer import MarkovianTrainer
from .markovian_vq import MarkovianVQTrainer
from .ppo_curriculum_config import PPOCurriculumConfig
from .ppo_curriculum_trainer import PPOCurriculumTrainer
from .rollout_trainer import RolloutTrainer
from .sft_trainer import SFTBaselineTrainer
from .star_trainer import STaRTrainer
from .trainer_config import (
    LatroConfig,
    MarkovianConfig,
    ReasoningPromptFields,
    RolloutConfig,
    SFTBaselineConfig,
    STaRConfig,
    TrainerConfig,
)

TRAINERS = {
    cls.trainer_name: (cls, cls.config_class) for cls in (LatroTrainer, MarkovianTrainer, SFTBaselineTrainer, STaRTrainer, PPOCurriculumTrainer)
}
VARIANTS = {("markovian", "use_vq"): MarkovianVQTrainer}  # (trainer name, config flag) -> class


def trainer_entry(name: str) -> tuple[type, type]:
    """(trainer class, config class) of a `--trainer` name, with an error that lists the names."""
    if name not in TRAINERS:
        raise ValueError(f"--trainer {name!r}: unknown; available: {', '.join(sorted(TRAINERS))}")
    return TRAINERS[name]


def trainer_class(name: str, config=None) -> type:
    """The class that trains `config` under the trainer `name` (variants chosen by config flags)."""
    cls = trainer_entry(name)[0]
    for (variant_of, flag), variant in VARIANTS.items():
        if variant_of == name and config is not None and getattr(config, flag, False):
            return variant
    return cls


__all__ = [
    "TRAINERS",
    "BaseTrainer",
    "CurriculumFields",
    "LatroConfig",
    "LatroTrainer",
    "MarkovianConfig",
    "MarkovianTrainer",
    "MarkovianVQTrainer",
    "PPOCurriculumConfig",
    "PPOCurriculumTrainer",
    "ReasoningPromptFields",
    "RolloutConfig",
    "RolloutTrainer",
    "SFTBaselineConfig",
    "SFTBaselineTrainer",
    "STaRConfig",
    "STaRTrainer",
    "TrainerConfig",
    "trainer_class",
    "trainer_entry",
]
