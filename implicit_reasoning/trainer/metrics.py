"""Scalar metrics averaged over calls and processes, and the samples table (JSONL + wandb)."""

from __future__ import annotations

import json
import os
from collections import defaultdict

import torch

SAMPLES_FILE = "samples.jsonl"


class MetricBuffer:
    """Values logged between two `self.log` calls; `means()` averages them over every process.

    A metric's mean is over every value logged on every process (weighted by how many each
    process logged), and a metric logged on only some processes still reaches the log.
    """

    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, name: str, value) -> None:
        if torch.is_tensor(value):
            value = value.detach().float().mean().item()
        self.sums[name] += float(value)
        self.counts[name] += 1

    def __bool__(self) -> bool:
        return bool(self.counts)

    def means(self, accelerator) -> dict[str, float]:
        names = sorted(self.counts)
        if accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            names = sorted({name for names_of_rank in gather_object([names]) for name in names_of_rank})
        local = torch.tensor(
            [[self.sums.get(n, 0.0), float(self.counts.get(n, 0))] for n in names], dtype=torch.float64,
            device=accelerator.device,
        ).reshape(-1, 2)
        if accelerator.num_processes > 1:
            local = accelerator.reduce(local, reduction="sum")
        self.sums.clear()
        self.counts.clear()
        return {n: float(s / c) for n, (s, c) in zip(names, local.tolist()) if c > 0}


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
