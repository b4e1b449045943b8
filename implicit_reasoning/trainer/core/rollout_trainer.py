"""RolloutTrainer: the layer for methods that generate at every update (LaTRO, Markovian, PPO).

How the sampler, gradient accumulation and the rollout buffer line up, for 2 processes,
gradient_accumulation_steps G = 2 and updates_per_rollout U = 1 (P = prompts per process
per update, K = samples per prompt, so each micro-batch holds P*K/G samples)::

    sampler (global batch b = 2P distinct prompts, each yielded G*U times)
      process 0: [p0..pP-1] [p0..pP-1]  | [next prompts] ...
      process 1: [pP..p2P-1][pP..p2P-1] | ...
                   micro 0    micro 1      micro 2 = the next update
    _prepare_inputs on process 0:
      micro 0: make_rollout(p0..pP-1) -> P*K samples, split into G slices; serve slice 0
      micro 1: serve slice 1                     (the same prompts arrive: no generation)
      -> optimizer step (Trainer) -> micro 2: roll out again

With U > 1 (PPO-style reuse) the same rollout serves U updates; `rollout_pass` says which.
`rollout_schedule` lays out the micro-batches of a rollout (PPO: shuffled minibatches per
epoch), and `end_rollout_early` may cut a cycle short at an update boundary (PPO's KL early
stop), after which the next micro-step rolls out afresh.

With a data mixture (`CurriculumFields.datasets`, two or more entries) the prompts of a rollout
are drawn by the curriculum's weights at rollout time (`trainer/core/curriculum.py`); the dataloader
then only paces the run.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch.utils.data import Sampler
from transformers import TrainerCallback

from ...evaluation.accuracy import shard_indices
from ...generation.sampling import generate, sampling_config
from ...runtime.models import eval_mode
from ...scoring.scored_generation import generate_scored
from .base_trainer import BaseTrainer
from .curriculum import Curriculum, row_losses, step_generator
from .docstrings import documented
from .rollout_config import RolloutConfig
from .state import atomic_write

FROZEN_FILE = "curriculum_frozen.safetensors"  # the curriculum's frozen copy, in checkpoints taken between refreshes


def is_zero3(trainer) -> bool:
    """DeepSpeed ZeRO stage 3: parameters are gathered collectively by every forward."""
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return bool(trainer.is_deepspeed_enabled and plugin is not None and plugin.zero_stage == 3)


class SaveFrozenCopyCallback(TrainerCallback):
    """Writes the curriculum's frozen copy (trainable weights) into each checkpoint (main process), before the
    checkpoint is marked complete (`checkpoints.py`)."""

    def __init__(self, trainer):
        self.trainer = trainer

    def write_checkpoint(self, folder: str) -> None:
        frozen = self.trainer._frozen
        if frozen is not None:
            from safetensors.torch import save_file

            tensors = {n: t.detach().cpu().contiguous() for n, t in frozen.items()}
            atomic_write(os.path.join(folder, FROZEN_FILE), lambda tmp: save_file(tensors, tmp))


class PromptGroupSampler(Sampler[int]):
    """Yields prompt indices so that each process draws its own prompts for one update.

    Every global batch (num_processes x prompts_per_process distinct prompts, shuffled with
    `seed + epoch`) is yielded `repeats` (= gradient accumulation x updates per rollout)
    times: accelerate hands batch j of each global batch to process j, so every process sees
    its own prompts once per micro-step, and the trainer generates at the first one only.
    """

    def __init__(self, num_prompts: int, prompts_per_process: int, num_processes: int, repeats: int, seed: int):
        self.global_batch = prompts_per_process * num_processes
        if num_prompts < self.global_batch:
            raise ValueError(
                f"train_dataset has {num_prompts} prompts, fewer than one update needs "
                f"({prompts_per_process} prompts/process x {num_processes} processes)"
            )
        self.num_prompts, self.repeats, self.seed, self.epoch = num_prompts, repeats, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_prompts, generator=generator).tolist()
        for start in range(0, len(self) // self.repeats, self.global_batch):
            batch = order[start : start + self.global_batch]
            for _ in range(self.repeats):
                yield from batch

    def __len__(self) -> int:
        return (self.num_prompts // self.global_batch) * self.global_batch * self.repeats


def split_rows(batch: dict, parts: int) -> list[dict]:
    """Split every row-indexed value (tensor or list) of `batch` into `parts` equal chunks (views)."""
    rows = len(next(iter(batch.values())))
    size = rows // parts
    return [{k: v[i * size : (i + 1) * size] for k, v in batch.items()} for i in range(parts)]


@documented
class RolloutTrainer(BaseTrainer):
    """Generates per update in `make_rollout`; the loss of each micro-batch is `compute_objective`."""

    config_class = RolloutConfig
    uses_reference = True
    args: RolloutConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._schedule: list[dict] = []
        self._micro_step = 0
        self._rollout_start = 0
        self._cycle_end = 0
        self.curriculum = self._build_curriculum()
        self._frozen: dict[str, torch.Tensor] | None = None  # trainable weights of the curriculum's frozen copy
        if self.curriculum is not None:
            self.register_state("curriculum", self.curriculum)
            if self.curriculum.keeps_copy:
                self.add_callback(SaveFrozenCopyCallback(self))

    # --------------------------------------------------------------- the method
    def make_rollout(self, prompts: dict[str, list]) -> dict:
        """Generate, score, reward and advantage for one update's prompts. Rows are samples (prompt-major)."""
        raise NotImplementedError

    @property
    def updates_per_rollout(self) -> int:
        """Optimizer updates made from one rollout (PPO-style reuse overrides this; 1 = on-policy)."""
        return 1

    def rollout_schedule(self, rollout: dict) -> list[dict]:
        """The micro-batches a rollout serves, in order: its G slices, once per update of the cycle."""
        return split_rows(rollout, self.args.gradient_accumulation_steps) * self.updates_per_rollout

    def end_rollout_early(self) -> bool:
        """Called at every update boundary inside a cycle, on every process: True = roll out afresh now.

        Must return the same on every process (decide on values reduced across processes).
        """
        return False

    def difficulty_texts(self, rows: dict[str, list]) -> tuple[list[str], list[str]]:
        """(prefix, target) texts whose per-token loss is a row's difficulty (trainers with a curriculum)."""
        raise NotImplementedError(f"{type(self).__name__} does not support a data curriculum")

    @property
    def share_prefill(self) -> bool:
        """Whether generation and no-grad scoring run each distinct prompt of a chunk once (`shared_prefill`); never
        under ZeRO-3, where every process must run the same forwards whatever its prompts."""
        return self.args.shared_prefill and not is_zero3(self)

    @property
    def share_prefill_with_grad(self) -> bool:
        """Whether the grad pass may run each distinct prompt of a micro-batch once too (its keys and values then
        take the gradients of all its samples): `share_prefill`, in one process without DeepSpeed (the prompts'
        forward and the samples' forward both precede one backward), without gradient checkpointing (its replay
        drops a KV cache) and with dropout off (one dropout mask would serve K samples)."""
        args = self.args
        checkpointing = args.gradient_checkpointing or any(  # also switched on in the model it was handed
            bool(getattr(module, "gradient_checkpointing", False)) for module in self.model.modules())
        return (self.share_prefill and self.accelerator.num_processes == 1 and not self.is_deepspeed_enabled
                and not checkpointing and args.disable_dropout)

    def sample(self, prompt_ids: list[list[int]], k: int, max_new_tokens: int, stop_ids=(), stop_seqs=(),
               min_new_tokens: int | None = None) -> torch.Tensor:
        """K samples per prompt (prompt-major) from the policy at the configured temperature / top-p / top-k."""
        args, tokenizer = self.args, self.processing_class
        config = sampling_config(
            max_new_tokens, tokenizer.pad_token_id, stop_ids, args.temperature, args.top_p, args.top_k,
            min_new_tokens=min_new_tokens,
        )
        repeated = [ids for ids in prompt_ids for _ in range(k)]
        with self.generation_model() as unwrapped:
            return generate(unwrapped, repeated, config, args.rollout_batch_size, stop_seqs,
                            backend=self.generation_engine(), shared_prefill=self.share_prefill)

    def sample_scored(self, prompt_ids: list[list[int]], k: int, max_new_tokens: int, stop_ids=(), stop_seqs=(),
                      answers=None, kept_length=None, logprob_temperature: float = 1.0):
        """`sample` that also returns generation's own log-probs (see `scoring/scored_generation.py`).

        ``answers`` (one token list per sample) are scored after each sample's first
        ``kept_length(tokens)`` tokens by continuing generation's KV cache. None where this is not
        used (another generation backend; ZeRO-3, where every process must run the same forwards,
        so no process may fall back alone): the caller then samples with `sample` and scores with
        a full pass. A result with ``failure`` set has tokens but no log-probs (score those tokens).
        """
        args, tokenizer = self.args, self.processing_class
        if getattr(args, "generation_backend", "hf") != "hf" or is_zero3(self):
            return None
        config = sampling_config(max_new_tokens, tokenizer.pad_token_id, stop_ids, args.temperature, args.top_p,
                                 args.top_k)
        repeated = [ids for ids in prompt_ids for _ in range(k)]
        with self.generation_model() as unwrapped:
            scored = generate_scored(unwrapped, repeated, config, args.rollout_batch_size, stop_seqs, answers,
                                     kept_length, logprob_temperature, shared_prefill=self.share_prefill)
        if scored.failure is not None:
            warnings.warn(f"scoring from generation is not exact here ({scored.failure}); scoring with a full pass")
        return scored

    def check_rewards(self, rewards: torch.Tensor, name: str = "reward") -> bool:
        """Flag the update when a reward is NaN / inf (the guard then skips it); True when all are finite."""
        finite = bool(torch.isfinite(rewards).all())
        if not finite:
            self.flag_nonfinite(f"non-finite {name}")
        return finite

    # ---------------------------------------------------------------- batching
    def check_train_inputs(self) -> None:
        if self.train_dataset is not None:
            self._get_train_sampler()  # raises when the set has fewer prompts than one update needs

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return PromptGroupSampler(
            len(dataset),
            self.args.prompts_per_rollout,
            self.accelerator.num_processes,
            self.args.gradient_accumulation_steps * self.updates_per_rollout,
            self.data_seed,
        )

    def get_train_dataloader(self):
        if self.train_dataset is None:
            raise ValueError(f"{type(self).__name__}: training requires a train_dataset")
        return self._get_dataloader(
            dataset=self.train_dataset,
            description="Training",
            batch_size=self.args.prompts_per_rollout,
            sampler_fn=self._get_train_sampler,
            is_training=True,
        )

    @property
    def rollout_pass(self) -> int:
        """Which pass over the current rollout the micro-batch being prepared belongs to (0-based)."""
        return (self._micro_step - self._rollout_start) // self.args.gradient_accumulation_steps

    def _prepare_inputs(self, inputs: dict) -> dict:
        """Roll out at the first micro-step of a rollout cycle; serve its schedule for every update of the cycle.

        After a resume the micro-step count continues from global_step; a resume inside a
        cycle rolls out afresh for the cycle's remaining updates (the buffer is not checkpointed).
        """
        accumulation = self.args.gradient_accumulation_steps
        resumed = self._micro_step == 0 and self.state.global_step > 0
        if resumed:
            self._micro_step = self.state.global_step * accumulation
        position = self._micro_step - self._rollout_start
        inside = 0 < position and self._micro_step < self._cycle_end and position % accumulation == 0
        stopped = inside and self.end_rollout_early()
        if not self._schedule or self._micro_step >= self._cycle_end or stopped:
            self._schedule = self.rollout_schedule(self.make_rollout(self._draw_prompts(inputs, fresh=stopped)))
            cycle, self._rollout_start = len(self._schedule), self._micro_step
            # a resume inside a cycle serves the fresh rollout for the cycle's remaining updates only
            self._cycle_end = self._micro_step + (cycle - self._micro_step % cycle if resumed else cycle)
        batch = {**self._schedule[self._micro_step - self._rollout_start], "rollout_pass": self.rollout_pass}
        self._micro_step += 1
        return batch

    # --------------------------------------------------------------- curriculum
    @property
    def data_seed(self) -> int:
        """Seed of prompt order and draws: `data_seed`, else `seed`."""
        return self.args.data_seed if self.args.data_seed is not None else self.args.seed

    def _build_curriculum(self) -> Curriculum | None:
        mixture = getattr(self.args, "mixture", None)
        if not mixture or len(mixture) < 2 or self.train_dataset is None:
            return None
        if "mixture_index" not in self.train_dataset.column_names:
            raise ValueError(f"{type(self).__name__}: `datasets` lists a mixture but the train dataset has no "
                             "mixture_index column: load it with the trainer's load_split (pipeline.build_trainer)")
        if self.is_deepspeed_enabled and self.args.freeze_interval != self.args.difficulty_interval:
            raise ValueError("freeze_interval != difficulty_interval keeps a frozen copy of the weights, which is not "
                             "supported under DeepSpeed: set them equal")
        return Curriculum(self.train_dataset, self.args, self.data_seed)

    def _draw_prompts(self, inputs: dict, fresh: bool = False) -> dict:
        """This rollout's prompts: the dataloader's, or the curriculum's draw for this step and process.

        `fresh`: a rollout that replaces an early-stopped one mid-cycle, while the dataloader still serves
        the stopped one's prompts: rows drawn at random (seeded by seed, step and process) instead.
        """
        n = len(next(iter(inputs.values())))
        step = self.state.global_step
        if self.curriculum is None:
            if not fresh:
                return inputs
            generator = step_generator(self.data_seed, step, self.accelerator.process_index)
            rows = torch.randint(len(self.train_dataset), (n,), generator=generator).tolist()
            return self.train_dataset.select(rows).to_dict()
        if self.curriculum.due(step):
            self._measure_difficulty(step)
        return self.curriculum.draw(n, step, self.accelerator.process_index)

    @torch.no_grad()
    def _measure_difficulty(self, step: int) -> None:
        """Every dataset's per-row losses on its fixed sample (shared out over processes), then new weights."""
        policy = self.unwrapped_policy()
        trainable = {n: p for n, p in policy.named_parameters() if p.requires_grad}
        if self.curriculum.keeps_copy and (self._frozen is None or self.curriculum.refresh_due(step)):
            self._frozen = self._restored_copy(trainable) if not self.curriculum.refresh_due(step) else None
            if self._frozen is None:
                self._frozen = {n: p.detach().clone() for n, p in trainable.items()}
        current = {n: p.detach().clone() for n, p in trainable.items()} if self.curriculum.keeps_copy else None
        if current is not None:
            for n, p in trainable.items():
                p.copy_(self._frozen[n])
        try:
            with eval_mode(policy):
                losses = [self._dataset_losses(policy, rows) for rows in self.curriculum.sample]
        finally:
            if current is not None:
                for n, p in trainable.items():
                    p.copy_(current[n])
        for name, value in self.curriculum.update(step, losses).items():
            self.log_metric(name, value)

    def _restored_copy(self, trainable: dict) -> dict | None:
        """The frozen copy saved in the checkpoint this run resumed from (a resume between refreshes)."""
        path = os.path.join(self.resumed_from, FROZEN_FILE) if self.resumed_from else None
        if path is None or not os.path.exists(path):
            if path is not None:
                warnings.warn(f"{path} is missing: the curriculum's frozen copy restarts from the current weights")
            return None
        from safetensors.torch import load_file

        saved = load_file(path)
        return {n: saved[n].to(device=p.device, dtype=p.dtype) for n, p in trainable.items()}

    def _dataset_losses(self, model, rows: list[int]) -> torch.Tensor:
        """Per-row losses of `rows` of the train dataset, each process scoring every P-th, gathered in order."""
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        indices, num_real = shard_indices(len(rows), rank, world)  # the same count on every rank (ZeRO-3)
        prefixes, targets = self.difficulty_texts(self.curriculum.dataset.select([rows[i] for i in indices]).to_dict())
        losses = row_losses(model, self.processing_class, prefixes, targets, self.args.max_prompt_length,
                            self.args.rollout_batch_size)[:num_real]
        if world == 1:
            return losses
        from accelerate.utils import gather_object

        parts = gather_object([losses.tolist()])
        ordered = [None] * len(rows)
        for r, part in enumerate(parts):
            ordered[r::world] = part
        return torch.tensor(ordered, dtype=torch.float32)
