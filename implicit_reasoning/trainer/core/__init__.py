"""The shared core of every trainer: the base and rollout trainers and configs, checkpoints, state, metrics, guard."""
