"""The data curriculum of a rollout trainer: draw each update's prompts from a mixture by weights.

Every `difficulty_interval` optimizer steps a frozen copy of the policy (refreshed every
`freeze_interval` steps) measures each dataset's difficulty on a fixed sample of
`difficulty_sample_size` rows: the mean and variance over rows of the per-token loss of the
row's target text (`difficulty_texts`). A rule (`objectives.curriculum`) turns them into weights.
Measuring happens when prompts are drawn, i.e. at rollout starts: when a rollout serves several
updates (PPO epochs / minibatches) a start need not fall on a multiple of the interval, so the
first draw at or after each multiple measures (and refreshes the copy at a multiple of
`freeze_interval`), rather than only the draws on a common multiple of both.

Prompts are drawn at rollout time, not by the dataloader: the draws of update u use the
weights at u and a generator seeded by (seed, u, process), so a resumed run draws exactly
what the uninterrupted run would (the dataloader only paces the epoch).
"""

from __future__ import annotations

import datasets
import torch

from ...objectives.curriculum import CurriculumWeights, draw_sources
from ...runtime.models import encode_continuation, encode_prompt
from ...scoring.packing import pack_rows
from ...scoring.window import score_rows
from .curriculum_config import entry_label

MIXTURE_COLUMNS = ("source", "mixture_index")  # dataset name (answer checker) and position in `datasets`


def load_mixture(config, split: str, load_entry) -> datasets.Dataset:
    """The `split` of every mixture entry (`load_entry(entry) -> Dataset`) with MIXTURE_COLUMNS, interleaved
    round-robin (row 0 of each dataset, then row 1 of each, ...) so that the first n rows, e.g.
    `max_eval_samples` of them, cover every dataset."""
    parts = []
    for index, entry in enumerate(config.mixture):
        part = load_entry(entry)
        if len(part) == 0:
            raise ValueError(f"datasets[{index}] ({entry_label(entry)}) split {split!r} has no rows")
        part = part.add_column("source", [entry["name"]] * len(part))
        parts.append(part.add_column("mixture_index", [index] * len(part)))
    if len(parts) == 1:
        return parts[0]
    offsets = [sum(len(p) for p in parts[:k]) for k in range(len(parts))]
    order = [offsets[k] + i for i in range(max(len(p) for p in parts)) for k, p in enumerate(parts) if i < len(p)]
    return datasets.concatenate_datasets(parts).select(order)


def step_generator(seed: int, step: int, process_index: int) -> torch.Generator:
    """The generator of the draws a process makes at optimizer step `step` (a resumed run makes the same)."""
    return torch.Generator().manual_seed(seed + 1_000_003 * (step + 1) + 7919 * process_index)


class Curriculum:
    """Weights over the mixture's datasets, the rows of each, and the difficulty sample of each."""

    def __init__(self, dataset: datasets.Dataset, config, seed: int):
        mixture = config.mixture
        self.labels = [entry_label(e) for e in mixture]
        index = dataset["mixture_index"]
        self.rows = [[i for i, m in enumerate(index) if m == k] for k in range(len(mixture))]
        for label, rows in zip(self.labels, self.rows):
            if not rows:
                raise ValueError(f"curriculum: the train dataset has no row of {label!r}")
        self.dataset, self.seed, self.config = dataset, seed, config
        self.weights = CurriculumWeights(self.labels, config.curriculum_rule, config.curriculum_eta,
                                         config.curriculum_floor, initial=[e["weight"] for e in mixture])
        generator = torch.Generator().manual_seed(seed)
        self.sample = [  # the fixed difficulty sample: the same rows at every measurement
            [rows[i] for i in torch.randperm(len(rows), generator=generator)[: config.difficulty_sample_size].tolist()]
            for rows in self.rows
        ]
        self.measured_step = -1

    # ------------------------------------------------------------------ drawing
    def draw(self, n: int, step: int, process_index: int) -> dict[str, list]:
        """n rows for this process at optimizer step `step` (columns as lists)."""
        generator = step_generator(self.seed, step, process_index)
        sources = draw_sources(self.weights.weights, n, generator)
        picks = [self.rows[k][int(torch.randint(len(self.rows[k]), (1,), generator=generator))] for k in sources]
        return self.dataset.select(picks).to_dict()

    # -------------------------------------------------------------- measuring
    def due(self, step: int) -> bool:
        """Whether the weights are to be updated before drawing for `step`: a multiple of `difficulty_interval`
        lies in (last measured step, step], i.e. this is the first draw at or after it."""
        interval = self.config.difficulty_interval
        return len(self.labels) > 1 and step // interval > self.measured_step // interval

    def refresh_due(self, step: int) -> bool:
        """Whether the frozen copy is refreshed at the measurement of `step` (asked before `update`): a multiple
        of `freeze_interval` lies in (last measured step, step]. A copy is kept only between refreshes."""
        interval = self.config.freeze_interval
        return step // interval > self.measured_step // interval

    @property
    def keeps_copy(self) -> bool:
        return self.config.freeze_interval != self.config.difficulty_interval

    def update(self, step: int, losses: list[torch.Tensor]) -> dict[str, float]:
        """Weights from each dataset's per-row losses (mean, population variance); returns the metrics to log."""
        mean = [float(v.double().mean()) for v in losses]
        var = [float(v.double().var(unbiased=False)) if v.numel() > 1 else 0.0 for v in losses]
        self.weights.update(mean, var)
        self.measured_step = step
        return self.weights.metrics()

    def state_dict(self) -> dict:
        return {"weights": self.weights.state_dict(), "measured_step": self.measured_step}

    def load_state_dict(self, state: dict) -> None:
        self.weights.load_state_dict(state["weights"])
        self.measured_step = int(state["measured_step"])


@torch.no_grad()
def row_losses(model, tokenizer, prefixes: list[str], targets: list[str], max_prompt_length: int,
               chunk_size: int) -> torch.Tensor:
    """Per-row mean token loss -log p(target | prefix) in float32 (one forward per chunk; LM head on targets only)."""
    x = [encode_prompt(tokenizer, p, max_prompt_length) for p in prefixes]
    y = [encode_continuation(tokenizer, t) for t in targets]
    if not all(y):
        raise ValueError("difficulty: a row has an empty target text")
    rows = pack_rows([x, y], tokenizer.pad_token_id, align=1)
    return -score_rows(model, rows, (2,), chunk_size, reduce="mean")[2]
