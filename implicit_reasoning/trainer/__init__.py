"""Trainers and their configs. `TRAINERS` maps the `--trainer` name to (trainer class, config class)."""

from .base_trainer import BaseTrainer
from .latro_trainer import LatroTrainer
from .markovian_trainer import MarkovianTrainer
from .trainer_config import LatroConfig, MarkovianConfig, SFTBaselineConfig, TrainerConfig

TRAINERS = {
    "latro": (LatroTrainer, LatroConfig),
    "markovian": (MarkovianTrainer, MarkovianConfig),
}

__all__ = [
    "BaseTrainer",
    "LatroTrainer",
    "LatroConfig",
    "MarkovianTrainer",
    "MarkovianConfig",
    "SFTBaselineConfig",
    "TrainerConfig",
    "TRAINERS",
]
