"""Scalar metrics averaged over calls and processes, the log window a checkpoint carries, and the samples table
(JSONL + wandb)."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import defaultdict

import torch
from transformers import TrainerCallback

SAMPLES_FILE = "samples.jsonl"


class MetricBuffer:
    """Values logged between two `self.log` calls, reduced over calls AND processes when logged.

    `add(name, value)`: the logged value is the mean of every value added on every process (a
    metric added on only some processes still reaches the log). `add_std(name, values)`: the
    logged value is the (unbiased) standard deviation of all the values added, pooled over
    calls and processes, not a mean of per-call stds.
    """

    def __init__(self):
        self.stats: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])  # sum, sum of squares, count

    def add(self, name: str, value) -> None:
        if torch.is_tensor(value):
            value = value.detach().float().mean().item()
        stats = self.stats[f"mean:{name}"]
        stats[0] += float(value)
        stats[2] += 1

    def add_std(self, name: str, values: torch.Tensor) -> None:
        values = values.detach().double().flatten()
        stats = self.stats[f"std:{name}"]
        stats[0] += float(values.sum())
        stats[1] += float((values * values).sum())
        stats[2] += values.numel()

    def __bool__(self) -> bool:
        return bool(self.stats)

    def totals(self, accelerator) -> dict[str, list[float]]:
        """key -> [sum, sum of squares, count] over every process (a collective: every process calls it)."""
        keys = sorted(self.stats)
        if accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            keys = sorted({key for keys_of_rank in gather_object([keys]) for key in keys_of_rank})
        local = torch.tensor([self.stats.get(k, [0.0, 0.0, 0.0]) for k in keys], dtype=torch.float64,
                             device=accelerator.device).reshape(-1, 3)
        if accelerator.num_processes > 1:
            local = accelerator.reduce(local, reduction="sum")
        return dict(zip(keys, local.tolist()))

    def load_totals(self, totals: dict[str, list[float]]) -> None:
        """Add `totals` (from `totals()`, on one process only) to what this buffer holds."""
        for key, values in totals.items():
            stats = self.stats[key]
            for i in range(3):
                stats[i] += values[i]

    def means(self, accelerator) -> dict[str, float]:
        totals = self.totals(accelerator)
        self.stats.clear()
        out = {}
        for key, (total, squares, count) in totals.items():
            kind, name = key.split(":", 1)
            if count == 0:
                continue
            if kind == "mean":
                out[name] = total / count
            elif count > 1:
                out[name] = math.sqrt(max(squares - total * total / count, 0.0) / (count - 1))
        return out


class LogWindow(TrainerCallback):
    """The log history across `train()`: logs made before it (an `evaluate()` of the starting model, at step 0) kept
    at its head, and the open log window carried through a checkpoint, so that the first log after a resume is the
    uninterrupted run's.

    A log averages the updates since the previous log (Trainer's loss, the method's `MetricBuffer`). A checkpoint
    between two logs ends that window in a killed run, and Trainer starts a resumed run's window at the
    checkpoint. `capture` (every process, before the checkpoint's state is written) keeps the window's
    sums over processes and the step of the last log; a resume adds them back at the start of training.
    Trainer keeps its window in `_tr_loss` / `_globalstep_last_logged` and has no hook for it: without
    them (another transformers version) the window is not carried and the resumed run warns once.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.snapshot: dict = {}
        self.pending: dict | None = None
        self.pre_training: list[dict] = []  # logs made before train() (an evaluate() of the starting model)

    def gather_for_checkpoint(self) -> None:
        trainer = self.trainer
        loss, last = getattr(trainer, "_tr_loss", None), getattr(trainer, "_globalstep_last_logged", None)
        if not torch.is_tensor(loss) or last is None:
            self.snapshot = {}
            return
        mean_loss = loss.detach().float().reshape(1).to(trainer.accelerator.device)
        if trainer.accelerator.num_processes > 1:  # Trainer logs the mean over processes of their sums
            mean_loss = trainer.accelerator.reduce(mean_loss, reduction="mean")
        self.snapshot = {"last_logged_step": int(last), "loss_sum": float(mean_loss.item()),
                         "metrics": trainer._metric_buffer.totals(trainer.accelerator)}

    def state_dict(self) -> dict:
        return self.snapshot

    def load_state_dict(self, state: dict) -> None:
        self.pending = state or None

    def on_train_begin(self, args, state, control, **kwargs):
        pending, self.pending = self.pending, None
        early, self.pre_training = self.pre_training, []
        if early and state.global_step == 0:  # Trainer starts the history afresh: keep the starting point in it
            state.log_history[:0] = early
        trainer = self.trainer
        if not pending:
            return
        if not (torch.is_tensor(getattr(trainer, "_tr_loss", None)) and hasattr(trainer, "_globalstep_last_logged")):
            warnings.warn("this transformers version keeps no log window to restore: the first log after the "
                          "resume averages only the updates since the checkpoint", stacklevel=2)
            return
        trainer._globalstep_last_logged = pending["last_logged_step"]
        trainer._tr_loss += pending["loss_sum"]
        if trainer.accelerator.is_main_process:  # sums: the other processes add nothing
            trainer._metric_buffer.load_totals(pending["metrics"])


class SamplesTable:
    """Rows (prompt, rationale, answer, reward, advantage, ...) kept for the next log; main process only."""

    def __init__(self, output_dir: str, max_rows: int):
        self.path = os.path.join(output_dir, SAMPLES_FILE)
        self.max_rows = max_rows
        self.rows: list[dict] = []

    def keep(self, rows: list[dict]) -> None:
        if self.max_rows:
            self.rows = rows[: self.max_rows]

    def write(self, step: int, report_to) -> None:
        """Append the kept rows to samples.jsonl and, when wandb is active, log them as a Table."""
        if not self.rows:
            return
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a") as f:
            for row in self.rows:
                f.write(json.dumps({"step": step, **row}) + "\n")
        if "wandb" in (report_to or []):
            import wandb

            if wandb.run is not None:
                columns = list(self.rows[0])
                table = wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in self.rows])
                # no explicit `step`: wandb's own counter runs ahead of global_step once evaluation
                # logs, and rows logged behind it are dropped; the global step goes in as a value,
                # as transformers' WandbCallback logs it ("train/global_step" is its step metric)
                wandb.log({"samples": table, "train/global_step": step})
        self.rows = []
