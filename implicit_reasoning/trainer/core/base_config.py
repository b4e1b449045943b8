"""`TrainerConfig`: the fields every trainer shares, on top of all of `transformers.TrainingArguments`.

Every field is a CLI flag / YAML key through `transformers.HfArgumentParser`. `__post_init__`
checks every value against its field's type and the ranges of TrainingArguments' main fields
(`field_checks.py`), then the constraints in `validate()`, each a `ValueError` naming the fields
and their values; subclasses extend `validate()`. Fields that only some trainers
read live in their own config classes (`RolloutConfig`, `ReasoningPromptFields`, one
module per trainer), so a config never carries a setting its trainer ignores.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field

from transformers import TrainingArguments

from ...data.prompts import DEFAULT_COT_TRIGGER
from ...generation.sampling import GENERATION_BACKENDS, VLLM_INSTALL
from ...runtime.launch import settle_launch
from ...runtime.quiet import import_integrations_quietly
from .docstrings import documented
from .field_checks import check_bounds, check_field_types

DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32")
DEFAULT_EVAL_MAX_NEW_TOKENS = 256
EVAL_ANSWER_TOKENS = 32
"""The budget rule of every trainer's evaluation: the reasoning gets its training budget (`response_length`,
Markovian's `cot_length`) and the answer after it this many tokens, unless `eval_max_new_tokens` says otherwise."""


def check(condition: bool, message: str) -> None:
    """Raise `ValueError(message)` unless `condition` holds (messages name the fields and values)."""
    if not condition:
        raise ValueError(message)


REPORTERS_NEEDING = {"tensorboard": (("tensorboard", "tensorboardX"), "pip install 'implicit-reasoning[tensorboard]'"),
                     "wandb": (("wandb",), "pip install wandb")}


def _has_accelerator() -> bool:
    import torch

    accelerator = getattr(torch, "accelerator", None)
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def report_to_list(value):
    """`report_to` in every form HF documents: `"tensorboard,wandb"`, `["tensorboard", "wandb"]` (the CLI's
    `--report_to tensorboard wandb`), `"none"`, `"all"`: a list of names, or "none" / "all" as they are."""
    if value is None or isinstance(value, str) and value.strip() in ("none", "all"):
        return value
    names = [part.strip() for item in ([value] if isinstance(value, str) else value)
             for part in str(item).split(",") if part.strip()]
    return names[0] if names in (["none"], ["all"]) else names


def hub_token_to_environment(config) -> None:
    """A `hub_token` given to a config (Python API, YAML or flag) goes to HF_TOKEN and the field is cleared.

    Trainer pickles its arguments into every checkpoint (`training_args.bin`), so the field must not
    hold the token; the hub libraries (and `push_to_hub` with `hub_token` unset) read HF_TOKEN.
    """
    if getattr(config, "hub_token", None):
        os.environ["HF_TOKEN"] = config.hub_token
        config.hub_token = None


@documented
@dataclass
class TrainerConfig(TrainingArguments):
    """Fields shared by every implicit_reasoning trainer.

    Parameters that control the model:
        model_name_or_path, tokenizer_name_or_path, checkpoint_path, attn_implementation,
        torch_dtype, trust_remote_code, disable_dropout
    Parameters that control the data:
        dataset_name, dataset_config, dataset_path, sanity_check, max_prompt_length,
        use_chat_template, max_eval_samples, num_evaluations
    Parameters that control LoRA:
        use_lora, lora_r, lora_alpha, lora_dropout, lora_target_modules
    Parameters that control evaluation and logging:
        eval_temperature, eval_num_samples, eval_max_new_tokens, eval_cut_off_fallback,
        num_logged_samples, max_nonfinite_updates, overwrite_output_dir
    Parameters that control how the policy generates (rollouts, STaR's samples, evaluation):
        generation_backend, vllm_gpu_memory_utilization, vllm_max_model_length
    """

    # --- model ---
    model_name_or_path: str | None = field(default=None, metadata={"help": "Policy model: hub id or local dir."})
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer: hub id or local dir (default: the model's)."}
    )
    checkpoint_path: str | None = field(
        default=None, metadata={"help": "Checkpoint dir to resume from (same as resume_from_checkpoint)."}
    )
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "eager | sdpa | flash_attention_2 (needs the `flash` extra)."}
    )
    torch_dtype: str = field(default="auto", metadata={"help": f"Weights dtype: {' | '.join(DTYPE_CHOICES)}."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Passed to from_pretrained."})
    disable_dropout: bool = field(
        default=True,
        metadata={"help": "Turn every dropout off (the model's and LoRA's): the update's log-probs are then "
                          "those of the rollout (a PPO ratio is exactly 1 until the weights move)."},
    )
    # --- data ---
    dataset_name: str = field(
        default="gsm8k", metadata={"help": "Registry name (gsm8k, math, arc_challenge, arithmetic, ...) or a local file/dir."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub config / generator params of the dataset."})
    dataset_path: str | None = field(
        default=None, metadata={"help": "Local copy of a registry dataset with the hub schema (file or dir of splits)."}
    )
    sanity_check: bool = field(default=False, metadata={"help": "Use a tiny subset of every split, for debugging."})
    max_prompt_length: int = field(default=512, metadata={"help": "Prompts longer than this (tokens) are left-truncated."})
    use_chat_template: bool = field(
        default=True, metadata={"help": "Wrap prompts in the tokenizer's chat template when it has one; False = plain text."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap on eval questions (None = all)."})
    num_evaluations: int = field(
        default=0, metadata={"help": "Evaluate this many times, evenly spaced over training (0 = use eval_strategy)."}
    )
    # --- LoRA ---
    use_lora: bool = field(default=False, metadata={"help": "Train a LoRA adapter; the reference is the adapter-disabled base."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout (needs disable_dropout=False)."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"], metadata={"help": "Module names for LoRA, or all-linear."}
    )
    # --- evaluation / logging ---
    eval_temperature: float = field(
        default=0.0, metadata={"help": "0 = greedy first completion; > 0 samples it (and maj@k) at this temperature."}
    )
    eval_num_samples: int = field(default=1, metadata={"help": "k of maj@k self-consistency (1 = off)."})
    eval_max_new_tokens: int | None = field(
        default=None, metadata={"help": "New-token budget at eval (default: the trainer's, e.g. response_length + 32)."}
    )
    eval_cut_off_fallback: bool = field(
        default=False,
        metadata={"help": "Read an eval completion cut off by the budget like a finished one (no answer statement: the "
                          "checker's fallback, e.g. its last number); False: only an answer statement counts."},
    )
    num_logged_samples: int = field(default=4, metadata={"help": "Rows of the samples table per logging step."})
    max_nonfinite_updates: int = field(
        default=10,
        metadata={"help": "A non-finite loss or reward skips the whole update; this many skipped updates in a row "
                          "is an error."},
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Kept False: the trainers read text columns."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "The job runner (implicit-reasoning-train) refuses a fresh run in an output_dir holding an "
                          "earlier run's files (run_config.json, checkpoints, samples.jsonl, weights) unless it resumes; "
                          "True lets the new run replace them."},
    )
    # --- generation ---
    generation_backend: str = field(
        default="hf",
        metadata={"help": f"What the policy generates with: {' | '.join(GENERATION_BACKENDS)}. hf = model.generate; "
                          "hf_compiled = static KV cache + torch.compile (compiles once per process); vllm = a "
                          f"colocated vLLM engine ({VLLM_INSTALL}, CUDA). The same sampling whatever the backend."},
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.3, metadata={"help": "generation_backend=vllm: share of the GPU memory the engine may take."}
    )
    vllm_max_model_length: int | None = field(
        default=None,
        metadata={"help": "generation_backend=vllm: the engine's context length (prompt + new tokens); None: the "
                          "checkpoint's. Set it when that context does not fit the engine's KV-cache share."},
    )

    def __post_init__(self):
        self.check_values()
        self.report_to = report_to_list(self.report_to)
        self.validate()
        if self.num_evaluations > 0 and str(self.eval_strategy) in ("no", "IntervalStrategy.NO"):
            self.eval_strategy = "steps"
            # a ratio of the total steps; HF reads values >= 1 as a step count, so one evaluation
            # (ratio 1.0) is expressed just below 1: the eval lands on the last step
            self.eval_steps = min(1.0 / self.num_evaluations, 0.999999)
            if self.metric_for_best_model is None:
                self.metric_for_best_model = "accuracy"
                self.greater_is_better = True
        if self.checkpoint_path and not self.resume_from_checkpoint:
            self.resume_from_checkpoint = self.checkpoint_path
        if self.dataloader_pin_memory and not _has_accelerator():  # torch ignores it there, with a warning
            self.dataloader_pin_memory = False
        import_integrations_quietly(self.report_to)  # no "WANDB offline" line in a run that does not report to it
        settle_launch(self)  # CPU-only multi-process launches, DeepSpeed on CPU (runtime/launch.py)
        super().__post_init__()
        hub_token_to_environment(self)

    # ---------------------------------------------------------------- derived settings
    @property
    def dataset_kwargs(self) -> dict:
        """Keyword arguments of the registry loaders shared by every trainer."""
        return dict(
            dataset_config=self.dataset_config,
            dataset_path=self.dataset_path,
            sanity_check=self.sanity_check,
            seed=self.seed,
        )

    @property
    def eval_budget(self) -> int:
        """New-token budget of an eval completion."""
        return self.eval_max_new_tokens or DEFAULT_EVAL_MAX_NEW_TOKENS

    def eval_sampling(self) -> dict:
        """Sampling settings of maj@k samples (and of the first completion when eval_temperature > 0)."""
        return dict(temperature=self.eval_temperature or 1.0, top_p=1.0, top_k=0)

    # -------------------------------------------------------------------- validation
    def check_values(self) -> None:
        """Types of every field (a YAML list for a number, 4.5 for an int: an error naming the field; "5e-7" and 8.0
        converted) and TrainingArguments' ranges (learning_rate >= 0, batch sizes >= 1, ...): `field_checks.py`.
        A subclass whose `__post_init__` reads fields before calling this one's calls it first."""
        check_field_types(self)
        check_bounds(self)

    def validate(self) -> None:
        """Check every constraint of the fields; subclasses extend it (calling super first)."""
        check(self.torch_dtype in DTYPE_CHOICES, f"torch_dtype={self.torch_dtype!r}: must be one of {DTYPE_CHOICES}")
        for name in ("max_prompt_length", "eval_num_samples"):
            check(getattr(self, name) >= 1, f"{name}={getattr(self, name)}: must be >= 1")
        check(
            self.eval_max_new_tokens is None or self.eval_max_new_tokens >= 1,
            f"eval_max_new_tokens={self.eval_max_new_tokens}: must be >= 1 (or None for the trainer's default)",
        )
        check(self.eval_temperature >= 0, f"eval_temperature={self.eval_temperature}: must be >= 0")
        check(self.num_evaluations >= 0, f"num_evaluations={self.num_evaluations}: must be >= 0")
        check(self.num_logged_samples >= 0, f"num_logged_samples={self.num_logged_samples}: must be >= 0")
        check(self.max_nonfinite_updates >= 1, f"max_nonfinite_updates={self.max_nonfinite_updates}: must be >= 1")
        if self.use_lora:
            check(self.lora_r >= 1, f"lora_r={self.lora_r}: must be >= 1 when use_lora=True")
            check(0 <= self.lora_dropout < 1, f"lora_dropout={self.lora_dropout}: must be in [0, 1)")
            check(
                self.lora_dropout == 0 or not self.disable_dropout,
                f"lora_dropout={self.lora_dropout} with disable_dropout=True: every dropout is off, so it would "
                "have no effect; set disable_dropout=False to train with dropout (log-probs of the update then "
                "differ from the rollout's by the dropout noise)",
            )
        for name in self.report_to if isinstance(self.report_to, list) else ():
            modules, install = REPORTERS_NEEDING.get(name, ((), ""))
            check(not modules or any(importlib.util.find_spec(m) is not None for m in modules),
                  f"report_to={self.report_to}: {name} is not installed: {install} (or drop it from report_to)")
        check(
            self.generation_backend in GENERATION_BACKENDS,
            f"generation_backend={self.generation_backend!r}: must be one of {GENERATION_BACKENDS}",
        )
        if self.generation_backend == "vllm":
            check(
                importlib.util.find_spec("vllm") is not None,
                f"generation_backend='vllm' needs vLLM (CUDA only), which is not installed: {VLLM_INSTALL}",
            )
        check(
            0 < self.vllm_gpu_memory_utilization <= 1,
            f"vllm_gpu_memory_utilization={self.vllm_gpu_memory_utilization}: must be in (0, 1]",
        )
        check(
            self.vllm_max_model_length is None or self.vllm_max_model_length >= 1,
            f"vllm_max_model_length={self.vllm_max_model_length}: must be >= 1 (or None for the checkpoint's)",
        )
        check(
            self.vllm_max_model_length is None or self.generation_backend == "vllm",
            f"vllm_max_model_length={self.vllm_max_model_length} with generation_backend="
            f"{self.generation_backend!r}: only the vLLM engine reads it; drop it or set generation_backend='vllm'",
        )
        if self.attn_implementation == "flash_attention_2":
            check(
                importlib.util.find_spec("flash_attn") is not None,
                "attn_implementation='flash_attention_2' needs flash-attn: pip install 'implicit-reasoning[flash]'",
            )


@documented
@dataclass
class ReasoningPromptFields:
    """Mixin for trainers that prompt with "Question: ...\\n{cot_trigger}" and generate a rationale.

    Parameters that control the prompt and the rationale:
        cot_trigger, response_length

    Used by LaTRO, STaR, PPO and the SFT baseline (list it before the TrainerConfig-derived base).
    """

    cot_trigger: str = field(default=DEFAULT_COT_TRIGGER, metadata={"help": "Line after every question (may be empty)."})
    response_length: int = field(default=256, metadata={"help": "Max new tokens of a rationale."})

    @property
    def dataset_kwargs(self) -> dict:
        return {**super().dataset_kwargs, "cot_trigger": self.cot_trigger, "use_chat_template": self.use_chat_template}

    @property
    def eval_budget(self) -> int:
        """The rationale's training budget + EVAL_ANSWER_TOKENS for the answer (the one budget rule)."""
        return self.eval_max_new_tokens or self.response_length + EVAL_ANSWER_TOKENS

    def validate(self) -> None:
        super().validate()
        check(self.response_length >= 1, f"response_length={self.response_length}: must be >= 1")


@documented
@dataclass
class SamplingFields:
    """Mixin for trainers that sample completions from the policy (rollouts, STaR's generations).

    Parameters that control sampling:
        temperature, top_p, top_k

    List it before the TrainerConfig-derived base.
    """

    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling (1.0 = off)."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling (0 = off: the whole vocabulary)."})

    def eval_sampling(self) -> dict:
        """maj@k samples at eval_temperature, or at the training temperature when that is 0; same top-p / top-k."""
        return dict(temperature=self.eval_temperature or self.temperature, top_p=self.top_p, top_k=self.top_k)

    def validate(self) -> None:
        super().validate()
        check(self.temperature > 0, f"temperature={self.temperature}: must be > 0 (it samples)")
        check(0 < self.top_p <= 1, f"top_p={self.top_p}: must be in (0, 1]")
        check(self.top_k >= 0, f"top_k={self.top_k}: must be >= 0 (0 = off)")
