"""Trainers and their configs."""

from .base_trainer import BaseTrainer
from .latro_trainer import LatroTrainer
from .trainer_config import LatroConfig, TrainerConfig

__all__ = ["BaseTrainer", "LatroTrainer", "LatroConfig", "TrainerConfig"]
