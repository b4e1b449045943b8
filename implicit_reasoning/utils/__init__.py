"""Pure helpers shared by the trainers: rollout math, data registry, answer checking."""
