"""Trainers and their configs: the shared core in `core/`, then one subpackage per method.

`core/` holds what every trainer shares (the base and rollout trainers and configs, checkpoints,
state, metrics, the guard, the curriculum sampler); `latro/`, `markovian/`, `star/`, `sft/` and
`ppo_curriculum/` each hold one method's config, trainer and helpers.

`TRAINERS` maps the `--trainer` name to (trainer class, config class);
`trainer_class(name, config)` gives the class that runs a config (a Markovian config with
`use_vq=True` runs `MarkovianVQTrainer`).

Imports are lazy (PEP 562 module `__getattr__`): `from implicit_reasoning.trainer import LatroConfig`
loads the config's module (and transformers' `TrainingArguments`), not every trainer; `TRAINERS`
loads them all. `TRAINER_SPECS` names each trainer's modules without importing them, so `--help`
lists the trainers without loading torch's training stack.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

# --trainer name -> (trainer module, trainer class, config module, config class), in --help's order
TRAINER_SPECS = {
    "latro": ("latro.trainer", "LatroTrainer", "latro.config", "LatroConfig"),
    "markovian": ("markovian.trainer", "MarkovianTrainer", "markovian.config", "MarkovianConfig"),
    "sft": ("sft.trainer", "SFTBaselineTrainer", "sft.config", "SFTBaselineConfig"),
    "star": ("star.trainer", "STaRTrainer", "star.config", "STaRConfig"),
    "ppo_curriculum": ("ppo_curriculum.trainer", "PPOCurriculumTrainer", "ppo_curriculum.config",
                       "PPOCurriculumConfig"),
}
_VARIANT_SPECS = {("markovian", "use_vq"): ("markovian.vq_trainer", "MarkovianVQTrainer")}  # (name, config flag) -> class
_EXPORTS = {  # public name -> its module
    **{cls: module for module, cls, _, _ in TRAINER_SPECS.values()},
    **{cls: module for _, _, module, cls in TRAINER_SPECS.values()},
    "BaseTrainer": "core.base_trainer", "RolloutTrainer": "core.rollout_trainer", "MarkovianVQTrainer": "markovian.vq_trainer",
    "TrainerConfig": "core.base_config", "ReasoningPromptFields": "core.base_config", "RolloutConfig": "core.rollout_config",
    "CurriculumFields": "core.curriculum_config",
}


def _load(module: str, name: str):
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __getattr__(name: str):
    if name == "TRAINERS":
        value = {key: trainer_entry(key) for key in TRAINER_SPECS}
    elif name == "VARIANTS":
        value = {key: _load(*spec) for key, spec in _VARIANT_SPECS.items()}
    elif name in _EXPORTS:
        value = _load(_EXPORTS[name], name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), "TRAINERS", "VARIANTS", *_EXPORTS})


def _check_name(name: str) -> None:
    if name not in TRAINER_SPECS:
        raise ValueError(f"--trainer {name!r}: unknown; available: {', '.join(sorted(TRAINER_SPECS))}")


def trainer_entry(name: str) -> tuple[type, type]:
    """(trainer class, config class) of a `--trainer` name, with an error that lists the names."""
    _check_name(name)
    module, cls, config_module, config_cls = TRAINER_SPECS[name]
    return _load(module, cls), _load(config_module, config_cls)


def config_class(name: str) -> type:
    """The config class of a `--trainer` name, importing its config module only (not the trainer)."""
    _check_name(name)
    return _load(*TRAINER_SPECS[name][2:])


def trainer_summary(name: str) -> str:
    """The first line of the trainer class's docstring, read from its source (nothing imported)."""
    _check_name(name)
    module, cls = TRAINER_SPECS[name][:2]
    tree = ast.parse((Path(__file__).parent / f"{module.replace('.', '/')}.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    return (ast.get_docstring(node) or "").strip().splitlines()[0]


def trainer_class(name: str, config=None) -> type:
    """The class that trains `config` under the trainer `name` (variants chosen by config flags)."""
    cls = trainer_entry(name)[0]
    for (variant_of, flag), spec in _VARIANT_SPECS.items():
        if variant_of == name and config is not None and getattr(config, flag, False):
            return _load(*spec)
    return cls


__all__ = [
    "TRAINERS",
    "TRAINER_SPECS",
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
    "config_class",
    "trainer_class",
    "trainer_entry",
    "trainer_summary",
]
