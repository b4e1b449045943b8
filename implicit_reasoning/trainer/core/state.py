"""Trainer state that outlives a process: checkpointed method state and the run's saved config.

* :class:`CheckpointedState` is a registry of objects with `state_dict()` /
  `load_state_dict()` (EMA baselines, reward histories, the non-finite guard, KL
  controllers, curriculum weights, ...). The core writes them as one JSON file into every
  checkpoint (:class:`SaveStateCallback`, before the checkpoint's completeness marker:
  `checkpoints.py`) and restores them on `resume_from_checkpoint`.
* :func:`atomic_write` writes a file through a temporary file and a rename (never half a file).
* :func:`save_run_config` writes the run's config (trainer name included, secrets masked)
  next to a saved model, so that evaluation and analysis treat the checkpoint the way its
  trainer did, however it was trained (script or Python API).
"""

from __future__ import annotations

import json
import os

from transformers import TrainerCallback

STATE_FILE = "implicit_reasoning_state.json"
RUN_CONFIG_NAME = "run_config.json"
UNMASKED_TOKEN_FIELDS = ("stop_token",)  # HF masks every *_token field as a secret; these are not secrets


class CheckpointedState:
    """Named objects whose state a resume must restore."""

    def __init__(self):
        self._items: dict[str, object] = {}

    def register(self, name: str, obj) -> None:
        for method in ("state_dict", "load_state_dict"):
            if not callable(getattr(obj, method, None)):
                raise TypeError(f"register_state({name!r}, ...): the object has no {method}() method")
        if name in self._items and self._items[name] is not obj:
            raise ValueError(f"register_state: {name!r} is already registered")
        self._items[name] = obj

    def state_dict(self) -> dict:
        return {name: obj.state_dict() for name, obj in self._items.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, obj in self._items.items():
            if name in state:
                obj.load_state_dict(state[name])

    def save(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        text = json.dumps(self.state_dict())
        atomic_write(os.path.join(folder, STATE_FILE), lambda tmp: write_text(tmp, text))

    def load(self, folder: str) -> bool:
        """Restore from `folder`; False when it holds no state file (a checkpoint written elsewhere)."""
        path = os.path.join(folder, STATE_FILE)
        if not os.path.exists(path):
            return False
        with open(path) as f:
            self.load_state_dict(json.load(f))
        return True


def atomic_write(path: str, write, before_replace=None) -> None:
    """`write(tmp)` writes the content to a temporary file beside `path`, which then replaces `path` (fsynced)."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".tmp.{name}.{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


class SaveStateCallback(TrainerCallback):
    """Writes the registered state into each checkpoint (main process), before the checkpoint is marked complete."""

    def __init__(self, registry: CheckpointedState):
        self.registry = registry

    def write_checkpoint(self, folder: str) -> None:
        self.registry.save(folder)


def run_config_dict(config, trainer_name: str, **extra) -> dict:
    """The config as JSON-ready values (HF masks token fields: secrets never leave), the trainer name, `extra`."""
    data = json.loads(config.to_json_string())
    for name in UNMASKED_TOKEN_FIELDS:
        if hasattr(config, name):
            data[name] = getattr(config, name)
    return {**data, "trainer": trainer_name, **extra}


def save_run_config(config, trainer_name: str, directory: str | None = None, **extra) -> str:
    """Write `run_config.json` into `directory` (default: the config's output_dir); returns its path.

    `extra` adds facts of the run that the config does not hold (e.g. `base_model_name_or_path`).
    """
    directory = directory or config.output_dir
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, RUN_CONFIG_NAME)
    text = json.dumps(run_config_dict(config, trainer_name, **extra), indent=2)
    atomic_write(path, lambda tmp: write_text(tmp, text))
    return path


def load_run_config(directory: str) -> dict:
    """The run config saved next to a model, or {} for a checkpoint trained elsewhere."""
    path = os.path.join(directory, RUN_CONFIG_NAME)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)
