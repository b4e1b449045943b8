"""Trainers and their configs. `TRAINERS` maps the `--trainer` name to (trainer class, config class)."""

from .base_trainer import BaseTrainer
from .latro_trainer import LatroTrainer
from .trainer_config import LatroConfig, SFTBaselineConfig, TrainerConfig

TRAINERS = {
    "latro": (LatroTrainer, LatroConfig),
}

__all__ = ["BaseTrainer", "LatroTrainer", "LatroConfig", "SFTBaselineConfig", "TrainerConfig", "TRAINERS"]
