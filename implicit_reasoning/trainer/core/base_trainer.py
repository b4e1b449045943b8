"""BaseTrainer: the core every method shares, on top of `transformers.Trainer`'s own training loop.

What the core owns: loading the policy, tokenizer and frozen reference for any causal LM
(LoRA: the adapter-disabled base is the reference), generation-ready unwrapping,
generation-based evaluation (accuracy, maj@k), metric logging averaged over processes, the
samples table, the per-update non-finite guard, method state saved in checkpoints, the run
config saved beside every model, crash-safe checkpoints (`checkpoints.py`) and one run per
output_dir (`output_dir.py`). Checkpointing, resume, DeepSpeed, mixed precision, callbacks and
`report_to` are Trainer's.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from transformers import PreTrainedModel, Trainer

from ...data.registry import load_task_dataset
from ...evaluation.accuracy import evaluate_dataset, summarize_records
from ...generation.sampling import use_backend
from ...runtime import models as model_utils
from ...runtime import sharding
from ...runtime.quiet import upstream_deprecations
from .base_config import TrainerConfig
from .checkpoints import CheckpointMixin, resolve_resume
from .docstrings import documented
from .guard import GuardCallback, SkipAwareScheduler, UpdateGuard, guard_optimizer_step
from .metrics import SAMPLES_FILE, LogWindow, MetricBuffer, SamplesTable
from .models import ModelsMixin
from .output_dir import locked, truncate_step_logs
from .state import CheckpointedState, SaveStateCallback, save_run_config


NOTHING_TO_TRAIN = "nothing_to_train"  # the key of `BaseTrainer.nothing_to_train()`'s micro-batch


def collate_rows(rows: list[dict]) -> dict[str, list]:
    """Column-wise lists of the raw rows; tokenization happens in the trainer."""
    return {key: [row[key] for row in rows] for key in rows[0]}


@documented
class BaseTrainer(ModelsMixin, CheckpointMixin, Trainer):
    """The core every method shares (see the module docstring); a method subclasses it.

    A subclass implements `compute_objective(model, batch)` (the loss of one micro-batch) and talks to the core
    through hooks: `log_metric`, `record_samples`, `register_state`, `flag_nonfinite`, `reference_model()`,
    `refresh_reference()`, `generation_model()`. Methods that generate at every update build on `RolloutTrainer`.
    """

    trainer_name = ""  # the `--trainer` name; run_config.json records it
    config_class = TrainerConfig
    required_columns: tuple[str, ...] = ()
    uses_reference = False  # builds a frozen reference model (or uses the LoRA-disabled base)
    eval_uses_reference = False  # evaluation_records needs the reference (Markovian: the critic answers)
    step_log_files: tuple[str, ...] = (SAMPLES_FILE,)  # JSONL logs with a `step`: a resume drops later rows
    peft_config_given = None  # the peft config as given / built from lora_*, before peft expands "all-linear"

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
        use_peft = peft_config is not None or args.use_lora
        self.base_model_path = self._base_model_path(model, args, use_peft)
        tokenizer = self._tokenizer(args, processing_class)
        for split, dataset in (("train", train_dataset), ("eval", eval_dataset)):
            self._check_columns(split, dataset, self.columns_needed(args) if split == "train" else self.eval_columns_needed(args))
        if not use_peft and not args.deepspeed and any(p.dtype in (torch.bfloat16, torch.float16) for p in model.parameters()):
            warnings.warn(
                f"{type(self).__name__}: the model's trainable weights are {next(model.parameters()).dtype}: the "
                "optimizer updates them in that precision and loses steps below its resolution. Load in float32 "
                "(torch_dtype=float32) and train with bf16=True (autocast), or train LoRA, or use DeepSpeed",
                stacklevel=2,
            )
        ref_model = self._build_reference(model, args, ref_model, use_peft) if self.uses_reference else None
        model = self._maybe_wrap_peft(model, args, peft_config) if use_peft else model
        if args.disable_dropout:
            model_utils.disable_dropout(model)  # the model's, the adapter's and attention's
        model = self.build_trained_module(model, args)
        super().__init__(
            model=model,
            args=args,
            data_collator=self.make_collator(tokenizer, args),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
        self.model_accepts_loss_kwargs = False  # our losses are already means over the micro-batch
        self.resumed_from: str | None = None  # set by train(): the checkpoint a run resumes from
        self.ref_model = self._prepare_reference(ref_model)
        self._metric_buffer = MetricBuffer()
        self._samples_table = SamplesTable(args.output_dir, args.num_logged_samples)
        self._checkpointed = CheckpointedState()
        self.update_guard = UpdateGuard(args.max_nonfinite_updates, self._any_process)
        self.register_state("nonfinite_guard", self.update_guard)
        self.add_callback(GuardCallback(self.update_guard))
        self.add_callback(SaveStateCallback(self._checkpointed))
        self._log_window = LogWindow(self)  # logs across train(): a pre-training evaluate(), a resume's open window
        self.register_state("log_window", self._log_window)
        self.add_callback(self._log_window)

    # ================================================================== hooks
    def log_metric(self, name: str, value) -> None:
        """Record a scalar (or the mean of a tensor) for the next log; averaged over calls and processes."""
        self._metric_buffer.add(name, value)

    def log_metric_std(self, name: str, values: torch.Tensor) -> None:
        """Record values whose standard deviation, pooled over calls and processes, is logged as `name`."""
        self._metric_buffer.add_std(name, values)

    def record_samples(self, rows: list[dict]) -> None:
        """Keep up to `num_logged_samples` rows (prompt, rationale, answer, reward, ...) for the next log."""
        if self.accelerator.is_main_process:
            self._samples_table.keep(rows)

    def register_state(self, name: str, obj) -> None:
        """Save `obj.state_dict()` in every checkpoint and `obj.load_state_dict(...)` it on resume."""
        self._checkpointed.register(name, obj)

    def flag_nonfinite(self, reason: str) -> None:
        """Skip the update being accumulated (e.g. a non-finite reward); `reason` goes into the error message."""
        self.update_guard.flag(reason)

    def build_trained_module(self, policy, args):
        """What Trainer trains (its `model`): the policy, or a module holding it and companions (PPO's value net).

        Called once in __init__ with the prepared policy (peft-wrapped, dropout off). A module other
        than the policy must say where the policy is (`policy_of`) and handle its own saving.
        """
        return policy

    def policy_of(self, module):
        """The policy inside an unwrapped trained module (see `build_trained_module`)."""
        return module

    def unwrapped_policy(self):
        """The policy, without DDP / DeepSpeed wrappers (a PeftModel under LoRA)."""
        return self.policy_of(self.accelerator.unwrap_model(self.model))

    @contextmanager
    def generation_model(self):
        """Context yielding the policy ready for `generate` (parameters gathered under ZeRO-3).

        Inside it, `generate` calls that name no backend run on `generation_engine()`.
        """
        from trl.models import unwrap_model_for_generation

        with (upstream_deprecations(),  # trl's call of a deprecated transformers property, not ours
              unwrap_model_for_generation(self.model_wrapped, self.accelerator, gather_deepspeed3_params=True) as model,
              use_backend(self.generation_engine())):
            yield self.policy_of(model)

    def generation_engine(self):
        """The `backend` of `generate`: the `generation_backend` name ("hf", "hf_compiled"), or for "vllm" the
        colocated engine (`generation/vllm_backend.py`), built at first use."""
        name = getattr(self.args, "generation_backend", "hf")
        if name != "vllm":
            return name
        if getattr(self, "_vllm_generator", None) is None:
            from ...generation.vllm_backend import trainer_generator

            self._vllm_generator = trainer_generator(self)
        return self._vllm_generator

    def generation_weights_changed(self) -> None:
        """The policy's weights changed without an optimizer step (a reset): the vLLM engine re-syncs them."""
        generator = getattr(self, "_vllm_generator", None)
        if generator is not None:
            generator.mark_stale()

    def compute_objective(self, model, batch: dict) -> dict[str, torch.Tensor]:
        """Loss of one micro-batch: a dict with `loss` and any scalar parts to log."""
        raise NotImplementedError

    def check_train_inputs(self) -> None:
        """Raise if training cannot start (too few prompts for one update, ...): called before any write."""

    def make_collator(self, tokenizer, args):
        """The data collator (built before Trainer's init): raw rows as column lists; rollout trainers tokenize."""
        return collate_rows

    # ================================================================== data
    @classmethod
    def load_split(cls, config: TrainerConfig, split: str, tokenizer):
        """The `split` of `config.dataset_name`, in the columns this trainer reads (`required_columns`)."""
        return load_task_dataset(config.dataset_name, split, tokenizer, **config.dataset_kwargs)

    @classmethod
    def sft_rows(cls, config: TrainerConfig, rows, tokenizer):
        """`queries` / `rationale` / `responses` texts for supervised warm starts, in this trainer's format.

        `rows` are registry rows from `load_task_dataset` (`queries`, `question`, `rationale`,
        `responses`, and `target`: the answer the completion states). LaTRO's format is the
        registry's, so nothing changes.
        """
        return rows

    @classmethod
    def columns_needed(cls, args) -> tuple[str, ...]:
        """The dataset columns this trainer reads under `args` (default: `required_columns`)."""
        return cls.required_columns

    @classmethod
    def eval_columns_needed(cls, args) -> tuple[str, ...]:
        """The eval set's columns that `evaluate()` reads (default: `required_columns`)."""
        return cls.required_columns

    def _check_columns(self, split: str, dataset, needed: tuple[str, ...]) -> None:
        if dataset is None or not needed:
            return
        missing = [c for c in needed if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"{type(self).__name__}: {split} dataset is missing column(s) {missing}; "
                f"it has {dataset.column_names}, needs {list(needed)}"
            )

    # ================================================================== loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if inputs.get(NOTHING_TO_TRAIN):  # a held update (see `nothing_to_train`)
            loss = self.zero_loss(model)
        else:
            parts = self.compute_objective(model, inputs)
            loss = parts["loss"]
            if not bool(torch.isfinite(loss.detach()).all()):
                # zero through the same graph (every parameter the loss reaches gets a gradient, as DDP / ZeRO expect;
                # ZeRO-3 has no full parameter outside a forward); the guard skips the whole update on every process
                self.flag_nonfinite("non-finite loss")
                loss = torch.where(torch.isfinite(loss), loss, torch.zeros_like(loss))
            else:
                for name, value in parts.items():
                    self.log_metric(name, value)
        if self.is_deepspeed_enabled and self.accelerator.sync_gradients and model.training:
            self.update_guard.decide_early(self.state.global_step + 1)  # the engine steps inside this backward
        return (loss, None) if return_outputs else loss

    def nothing_to_train(self) -> dict:
        """The micro-batch of an update with nothing to train on (e.g. STaR's iteration without a kept sample).

        It must be the same on every process. The update is held (`UpdateGuard.hold`): skipped under
        every engine, not counted as non-finite, the LR schedule advancing through it.
        """
        self.update_guard.hold()
        return {NOTHING_TO_TRAIN: True}

    def zero_loss(self, model) -> torch.Tensor:
        """An exact zero through a real forward of the trained module (one pad token), so that the backward reaches
        the parameters the way a training step does under every engine (DDP's reducer, ZeRO-3's gathering).
        Trainers whose trained module is not a causal LM override it."""
        token = torch.full((1, 1), self.processing_class.pad_token_id, device=self.accelerator.device)
        return model(input_ids=token, attention_mask=torch.ones_like(token)).logits.float().sum() * 0.0

    def sum_over_processes(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over all processes (a collective: every process calls it), returned on CPU."""
        values = values.to(self.accelerator.device)
        if self.accelerator.num_processes > 1:
            values = self.accelerator.reduce(values, reduction="sum")
        return values.cpu()

    def _any_process(self, flag: bool) -> bool:
        return bool(self.sum_over_processes(torch.tensor([float(flag)])).item() > 0)

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        return guard_optimizer_step(optimizer, self.update_guard)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)  # steps on eval metrics
        if not (plateau or isinstance(scheduler, SkipAwareScheduler)):
            self.lr_scheduler = SkipAwareScheduler(scheduler, self.update_guard)
        return self.lr_scheduler

    # =============================================================== logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the method's metrics (a collective: every process logs)
            logs = {**self._metric_buffer.means(self.accelerator), **logs}
            logs["nonfinite_updates"] = float(self.update_guard.skipped_updates)
            if self.accelerator.is_main_process:
                self._samples_table.write(self.state.global_step, self.args.report_to)
        super().log(logs, start_time)

    # ============================================================ evaluation
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Greedy (or eval_temperature) accuracy and maj@k on the eval split, with the dataset's checker."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError(f"{type(self).__name__}.evaluate needs an eval_dataset")
        self._prepare_deepspeed_for_eval()
        with self.generation_model() as unwrapped:
            records = self.evaluation_records(unwrapped, dataset)
            extra = self.evaluation_extras(unwrapped, dataset)
        records = self._gather_records(records)
        summary = {**self.summarize_records(records), **extra}
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in summary.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _prepare_deepspeed_for_eval(self) -> None:
        """evaluate() before train() under DeepSpeed: no engine yet, and none is built here (an inference engine would
        leave train() a stale one and a rewritten DeepSpeed config). `generation_model()` gathers ZeRO-3's partitioned
        weights for the evaluation; a model DeepSpeed has not partitioned only needs to be on the device."""
        if self.is_deepspeed_enabled and self.deepspeed is None and not sharding.is_partitioned(self.model):
            self.model.to(self.args.device)

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
            progress=self.accelerator.is_main_process and not self.args.disable_tqdm,  # in training too: no silent pause
        )

    def evaluation_extras(self, model, dataset) -> dict[str, float]:
        """Metrics beyond the per-question records (PPO: the validation loss); the same on every process."""
        return {}

    def summarize_records(self, records: list[dict]) -> dict[str, float]:
        """The eval metrics of the gathered records (accuracy, maj@k, ...)."""
        return summarize_records(records)

    def eval_checker_name(self) -> str:
        """Dataset name whose answer checker scores eval completions."""
        return self.args.dataset_name

    def _gather_records(self, records: list[dict]) -> list[dict]:
        if self.accelerator.num_processes == 1:
            return records
        from accelerate.utils import gather_object

        return sorted(gather_object(records), key=lambda r: r["index"])

    # ========================================================== save / resume
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Trainer's save, plus `run_config.json` (the trainer and its settings) beside the weights."""
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            self._save_run_config(output_dir or self.args.output_dir)

    def train(self, resume_from_checkpoint=None, **kwargs):
        resume = resume_from_checkpoint if resume_from_checkpoint is not None else self.args.checkpoint_path
        resume = resolve_resume(resume, self.args.output_dir)  # True / "True": the newest COMPLETE checkpoint
        self.resumed_from = resume or None  # the checkpoint this run resumes from, for subclasses
        self.check_train_inputs()  # nothing is written into output_dir before this passes
        if resume:
            self._checkpointed.load(resume)
        elif self.state.global_step == 0:
            self._log_window.pre_training = list(self.state.log_history)
        with locked(self.args.output_dir, self.accelerator):  # one run at a time (output_dir.py)
            if self.args.should_save:  # rows a killed attempt logged after the checkpoint (a fresh run: all)
                truncate_step_logs(self.args.output_dir, self.step_log_files, resume)
            return super().train(resume_from_checkpoint=resume or None, **kwargs)

    def _save_run_config(self, directory: str) -> None:
        save_run_config(self.args, self.trainer_name, directory, base_model_name_or_path=self.base_model_path)

