"""PPO with a value model and a data curriculum: its config, trainer, data, support and value model."""
