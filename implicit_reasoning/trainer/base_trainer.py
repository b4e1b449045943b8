"""BaseTrainer: what every method shares, on top of `transformers.Trainer`'s own training loop.

Rollouts happen where the batch is prepared (`_prepare_inputs`), the objective lives in
`compute_loss`; checkpointing, resume, DeepSpeed, mixed precision, callbacks and
`report_to` logging are Trainer's. A subclass implements `make_rollout` (generate,
score, reward, advantage for one optimizer update) and `compute_objective` (the loss
of one micro-batch of that rollout).
"""

from __future__ import annotations

import copy
import json
import os
from collections import defaultdict
from contextlib import contextmanager

import torch
from torch.utils.data import Sampler
from transformers import PreTrainedModel, Trainer
from transformers.trainer_utils import get_last_checkpoint

from ..utils import model_utils
from ..utils.data_utils import load_task_dataset
from ..utils.evaluation import evaluate_dataset, summarize_records
from ..utils.generation import generate, sampling_config
from .trainer_config import TrainerConfig

EXTRA_STATE_NAME = "implicit_reasoning_state.json"
SAMPLES_FILE = "samples.jsonl"


class PromptGroupSampler(Sampler[int]):
    """Yields prompt indices so that each process draws its own prompts for one update.

    Every global batch (num_processes x prompts_per_process distinct prompts, shuffled with
    `seed + epoch`) is yielded `repeats` (= gradient accumulation) times: accelerate hands
    batch j of each global batch to process j, so every process sees its own prompts once
    per micro-step, and the trainer generates for them at the first micro-step only.
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


def collate_rows(rows: list[dict]) -> dict[str, list]:
    """Column-wise lists of the raw rows; tokenization happens in the rollout."""
    return {key: [row[key] for row in rows] for key in rows[0]}


def split_rows(batch: dict, parts: int) -> list[dict]:
    """Split every row-indexed value (tensor or list) of `batch` into `parts` equal chunks."""
    rows = len(next(iter(batch.values())))
    size = rows // parts
    return [{k: v[i * size : (i + 1) * size] for k, v in batch.items()} for i in range(parts)]


class BaseTrainer(Trainer):
    """Shared machinery; see the module docstring. Subclasses set `required_columns`."""

    required_columns: tuple[str, ...] = ()
    eval_uses_reference = False  # True when evaluation_records needs the frozen reference model

    def __init__(
        self,
        model: str | PreTrainedModel,
        args: TrainerConfig,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        ref_model: str | PreTrainedModel | None = None,
        peft_config=None,
        callbacks=None,
    ):
        if isinstance(model, str):
            model = model_utils.load_causal_lm(model, args)
        if processing_class is None:
            processing_class = model_utils.load_tokenizer(model.config._name_or_path, args.trust_remote_code)
        tokenizer = model_utils.prepare_tokenizer(processing_class)
        for split, dataset in (("train", train_dataset), ("eval", eval_dataset)):
            self._check_columns(split, dataset)
        ref_model = self._build_reference(model, args, ref_model, peft_config)
        model = self._maybe_wrap_peft(model, args, peft_config)
        super().__init__(
            model=model,
            args=args,
            data_collator=collate_rows,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
        self.model_accepts_loss_kwargs = False  # our losses are already means over the micro-batch
        self.ref_model = self._prepare_reference(ref_model)
        self.stop_ids = model_utils.stop_token_ids(tokenizer, args.stop_token, args.stop_token_ids)
        self.stop_seq_ids = model_utils.stop_sequence_ids(tokenizer, args.stop_seqs)
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._samples: list[dict] = []
        self._buffer: list[dict] = []
        self._micro_step = 0
        self._rollout_start = 0
        self._nonfinite_in_a_row = 0
        self.nonfinite_updates = 0

    # -------------------------------------------------------------------- data
    @classmethod
    def load_split(cls, config: TrainerConfig, split: str, tokenizer):
        """The `split` of `config.dataset_name`, in the columns this trainer reads (`required_columns`)."""
        return load_task_dataset(config.dataset_name, split, tokenizer, **config.dataset_kwargs)

    @classmethod
    def sft_rows(cls, config: TrainerConfig, rows):
        """`queries` / `rationale` / `responses` texts for supervised warm starts, in this trainer's format.

        `rows` are registry rows (`queries`, `question`, `rationale`, `responses`, and `target`: the
        answer the completion states). LaTRO's format is the registry's, so nothing changes.
        """
        return rows

    # ------------------------------------------------------------------ models
    def _check_columns(self, split: str, dataset) -> None:
        if dataset is None or not self.required_columns:
            return
        missing = [c for c in self.required_columns if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"{type(self).__name__}: {split} dataset is missing column(s) {missing}; "
                f"it has {dataset.column_names}, needs {list(self.required_columns)}"
            )

    @staticmethod
    def _use_peft(args, peft_config) -> bool:
        return peft_config is not None or args.use_lora

    def _build_reference(self, model, args, ref_model, peft_config):
        """None with LoRA (the adapter-disabled base is the reference), else a frozen model."""
        if self._use_peft(args, peft_config) and ref_model is None:
            return None
        if isinstance(ref_model, str) or (ref_model is None and args.ref_model_name_or_path):
            ref_model = model_utils.load_causal_lm(ref_model or args.ref_model_name_or_path, args)
        elif ref_model is None:
            ref_model = copy.deepcopy(model)
        ref_model.eval().requires_grad_(False)
        return ref_model

    def _maybe_wrap_peft(self, model, args, peft_config):
        if not self._use_peft(args, peft_config):
            return model
        from peft import LoraConfig, get_peft_model

        if peft_config is None:
            targets = args.lora_target_modules
            peft_config = LoraConfig(
                r=args.lora_r,
                lora_alpha=args.lora_alpha,
                lora_dropout=args.lora_dropout,
                target_modules=targets[0] if targets == ["all-linear"] else targets,
                task_type="CAUSAL_LM",
            )
        if args.gradient_checkpointing:
            model.enable_input_require_grads()
        return get_peft_model(model, peft_config)

    def _prepare_reference(self, ref_model):
        if ref_model is None:
            return None
        if self.is_deepspeed_enabled:
            from trl.models import prepare_deepspeed

            return prepare_deepspeed(ref_model, self.accelerator)
        return self.accelerator.prepare_model(ref_model, evaluation_mode=True)

    @contextmanager
    def reference_model(self):
        """The frozen reference: a separate model, or (LoRA) the policy with its adapter disabled."""
        if self.ref_model is not None:
            yield self.ref_model
            return
        unwrapped = self.accelerator.unwrap_model(self.model)
        with unwrapped.disable_adapter():
            yield unwrapped

    def generation_model(self):
        """Context yielding the policy ready for `generate` (gathered under ZeRO-3)."""
        from trl.models import unwrap_model_for_generation

        return unwrap_model_for_generation(
            self.model_wrapped, self.accelerator, gather_deepspeed3_params=True
        )

    # ---------------------------------------------------------------- batching
    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return PromptGroupSampler(
            len(dataset),
            self.args.prompts_per_update,
            self.accelerator.num_processes,
            self.args.gradient_accumulation_steps * self.updates_per_rollout,
            self.args.seed,
        )

    def get_train_dataloader(self):
        if self.train_dataset is None:
            raise ValueError(f"{type(self).__name__}: training requires a train_dataset")
        return self._get_dataloader(
            dataset=self.train_dataset,
            description="Training",
            batch_size=self.args.prompts_per_update,
            sampler_fn=self._get_train_sampler,
            is_training=True,
        )

    @property
    def updates_per_rollout(self) -> int:
        """Optimizer updates made from one rollout (PPO-style reuse overrides this; 1 = on-policy)."""
        return 1

    @property
    def rollout_pass(self) -> int:
        """Which pass over the current rollout the micro-batch being prepared belongs to (0-based)."""
        return (self._micro_step - self._rollout_start) // self.args.gradient_accumulation_steps

    def _prepare_inputs(self, inputs: dict) -> dict:
        """Roll out at the first micro-step of a rollout cycle; serve its slices for every update of the cycle.

        The sampler hands the same prompts for the whole cycle (gradient_accumulation_steps x
        updates_per_rollout micro-steps), so only the first call generates. After a resume the
        micro-step count continues from global_step; a resume inside a cycle rolls out afresh
        for the cycle's remaining updates (the buffer is not checkpointed).
        """
        accumulation = self.args.gradient_accumulation_steps
        if self._micro_step == 0 and self.state.global_step > 0:
            self._micro_step = self.state.global_step * accumulation
        if not self._buffer or self._micro_step % (accumulation * self.updates_per_rollout) == 0:
            self._buffer = split_rows(self.make_rollout(inputs), accumulation)
            self._rollout_start = self._micro_step
        batch = {**self._buffer[self._micro_step % accumulation], "rollout_pass": self.rollout_pass}
        self._micro_step += 1
        return batch

    def make_rollout(self, prompts: dict[str, list]) -> dict:
        """Generate, score, reward and advantage for one update's prompts. Rows are samples."""
        raise NotImplementedError

    def compute_objective(self, model, batch: dict) -> dict[str, torch.Tensor]:
        """Loss of one micro-batch: a dict with `loss` and any scalar parts to log."""
        raise NotImplementedError

    def sample(self, prompt_ids: list[list[int]], k: int) -> torch.Tensor:
        """K rollouts per prompt (prompt-major), in chunks of rollout_batch_size; generated ids only."""
        repeated = [ids for ids in prompt_ids for _ in range(k)]
        tokenizer = self.processing_class
        config = sampling_config(self.args, tokenizer.pad_token_id, self.stop_ids)
        with self.generation_model() as unwrapped:
            return generate(unwrapped, repeated, config, self.args.rollout_batch_size, self.stop_seq_ids)

    # -------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        parts = self.compute_objective(model, inputs)
        loss = parts["loss"]
        if not self._all_finite(loss):
            loss = self._skip_nonfinite_update(model)
        else:
            self._nonfinite_in_a_row = 0
        for name, value in parts.items():
            self._metrics[name].append(float(value.detach().mean()))
        return (loss, None) if return_outputs else loss

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on EVERY process: all ranks then skip (or raise) together."""
        bad = (~torch.isfinite(loss.detach())).any().float().reshape(1)
        if self.accelerator.num_processes > 1:
            bad = self.accelerator.reduce(bad, reduction="sum")
        return bool(bad.item() == 0)

    def _skip_nonfinite_update(self, model) -> torch.Tensor:
        """Replace a non-finite loss by an exact zero that still touches every trainable parameter."""
        self.nonfinite_updates += 1
        self._nonfinite_in_a_row += 1
        if self._nonfinite_in_a_row >= self.args.max_nonfinite_updates:
            raise RuntimeError(
                f"{self._nonfinite_in_a_row} non-finite losses in a row (max_nonfinite_updates="
                f"{self.args.max_nonfinite_updates}); lower learning_rate or check the data"
            )
        return sum((p * 0.0).sum() for p in model.parameters() if p.requires_grad)

    # ----------------------------------------------------------------- logging
    def record_samples(self, rows: list[dict]) -> None:
        """Keep up to `num_logged_samples` rows (prompt, rationale, answer, reward, advantage) for the next log."""
        if self.accelerator.is_main_process and self.args.num_logged_samples:
            self._samples = rows[: self.args.num_logged_samples]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._metrics and "loss" in logs:
            logs = {**self._gathered_metrics(), **logs}
            self._metrics.clear()
            self._write_samples()
        super().log(logs, start_time)

    def _gathered_metrics(self) -> dict[str, float]:
        """Means of the metrics accumulated since the last log, averaged over all processes."""
        self._metrics["nonfinite_updates"] = [float(self.nonfinite_updates)]
        keys = sorted(self._metrics)  # every process logs the same keys at the same steps
        local = torch.tensor([sum(self._metrics[k]) / len(self._metrics[k]) for k in keys], device=self.args.device)
        means = self.accelerator.gather(local.unsqueeze(0)).mean(dim=0) if self.accelerator.num_processes > 1 else local
        return dict(zip(keys, means.tolist()))

    def _write_samples(self) -> None:
        if not self._samples or not self.accelerator.is_main_process:
            return
        step = self.state.global_step
        os.makedirs(self.args.output_dir, exist_ok=True)
        with open(os.path.join(self.args.output_dir, SAMPLES_FILE), "a") as f:
            for row in self._samples:
                f.write(json.dumps({"step": step, **row}) + "\n")
        if "wandb" in (self.args.report_to or []):
            import wandb

            if wandb.run is not None:
                columns = list(self._samples[0])
                table = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in self._samples])
                wandb.log({"samples": table}, step=step)
        self._samples = []

    # -------------------------------------------------------------- evaluation
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Greedy (or eval_temperature) accuracy and maj@k on the eval split, with the dataset's checker."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError(f"{type(self).__name__}.evaluate needs an eval_dataset")
        self._prepare_deepspeed_for_eval()
        with self.generation_model() as unwrapped:
            records = self.evaluation_records(unwrapped, dataset)
        records = self._gather_records(records)
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in summarize_records(records).items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _prepare_deepspeed_for_eval(self) -> None:
        """evaluate() before train() under DeepSpeed: build the inference engine as Trainer's own eval loop does."""
        if self.is_deepspeed_enabled and self.deepspeed is None and not self.is_in_train:
            from transformers.integrations.deepspeed import deepspeed_init

            deepspeed_init(self, num_training_steps=0, inference=True)
            self.model_wrapped = self.deepspeed = self.accelerator.prepare(self.model)

    def evaluation_records(self, model, dataset) -> list[dict]:
        """Per-question records (`index`, `correct`, ...) for this process's shard of `dataset`."""
        return evaluate_dataset(
            model,
            self.processing_class,
            dataset,
            self.eval_checker_name(),
            self.args,
            process_index=self.accelerator.process_index,
            num_processes=self.accelerator.num_processes,
            progress=self.is_in_train is False and self.accelerator.is_main_process,
        )

    def eval_checker_name(self) -> str:
        """Dataset name whose answer checker scores eval completions."""
        return self.args.dataset_name

    def _gather_records(self, records: list[dict]) -> list[dict]:
        if self.accelerator.num_processes == 1:
            return records
        from accelerate.utils import gather_object

        return sorted(gather_object(records), key=lambda r: r["index"])

    # ------------------------------------------------------- trainer state I/O
    def extra_state(self) -> dict:
        """Method state that a resume must restore (EMA baselines, histories, ...). JSON-serialisable."""
        return {"nonfinite_updates": self.nonfinite_updates}

    def load_extra_state(self, state: dict) -> None:
        self.nonfinite_updates = state.get("nonfinite_updates", 0)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial), f"checkpoint-{self.state.global_step}")
            with open(os.path.join(folder, EXTRA_STATE_NAME), "w") as f:
                json.dump(self.extra_state(), f)

    def train(self, resume_from_checkpoint=None, **kwargs):
        resume = resume_from_checkpoint if resume_from_checkpoint is not None else self.args.checkpoint_path
        if resume is True:
            resume = get_last_checkpoint(self.args.output_dir)
        if resume:
            path = os.path.join(resume, EXTRA_STATE_NAME)
            if os.path.exists(path):
                with open(path) as f:
                    self.load_extra_state(json.load(f))
        return super().train(resume_from_checkpoint=resume or None, **kwargs)

