"""STaR's iteration data outside the algorithm file: the generations file, the loader that paces Trainer's loop,
and the callbacks that put the data in every checkpoint and validate at the end of every iteration.

A generations file (`iteration_<n>/generated.jsonl`, and `star_iteration_data.jsonl` in a
checkpoint) holds one JSON record per sample; see `objectives/star.py` for the fields.
"""

from __future__ import annotations

import json
import os

from torch.utils.data import Sampler
from transformers import TrainerCallback

from ..core.state import atomic_write, write_text

GENERATED_FILE = "generated.jsonl"
CHECKPOINT_DATA_FILE = "star_iteration_data.jsonl"
REQUIRED_FIELDS = {"question_index", "prompt", "rationale", "correct", "hinted"}


def load_generations(path: str) -> list[dict]:
    """An iteration_<n>/generated.jsonl file (question, prompt, rationale, prediction, correct, hinted, ...)."""
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                record = json.loads(line)
                missing = REQUIRED_FIELDS - set(record)
                if missing:
                    raise ValueError(f"{path} line {number}: missing {sorted(missing)}")
                records.append(record)
    return records


def write_generations(path: str, records: list[dict]) -> None:
    """The records as JSON lines, written atomically (a killed run never leaves half a file where a whole one was)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    atomic_write(path, lambda tmp: write_text(tmp, text))


class PacingSampler(Sampler[int]):
    """0..n-1 cycled to a whole multiple of `per_update` indices (accelerate then shards it evenly)."""

    def __init__(self, n: int, per_update: int):
        self.n, self.length = n, -(-n // per_update) * per_update

    def __iter__(self):
        return (i % self.n for i in range(self.length))

    def __len__(self) -> int:
        return self.length


class SaveIterationData(TrainerCallback):
    """Writes the iteration's data (generations, reference log-probs) into every checkpoint, before it is marked
    complete (`checkpoints.py`): a resume inside the iteration trains on exactly them, from any directory and any
    number of times. `records()` gives them (from memory: a resumed run holds them whatever it resumed from)."""

    def __init__(self, records):
        self.records = records

    def write_checkpoint(self, folder: str) -> None:
        records = self.records()
        if records is None:
            raise RuntimeError(f"saving {folder}: no STaR iteration data built yet, so the checkpoint could not be "
                               "resumed inside its iteration")
        write_generations(os.path.join(folder, CHECKPOINT_DATA_FILE), records)


class ValidateAtIterationEnds(TrainerCallback):
    """Validation at the end of every iteration (on top of val_every_n_steps)."""

    def __init__(self, schedule: list[int]):
        self.ends = {sum(schedule[: n + 1]) for n in range(len(schedule))}

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.ends:
            control.should_evaluate = True
        return control
