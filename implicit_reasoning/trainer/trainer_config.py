"""Configs: `TrainerConfig` extends `transformers.TrainingArguments`; one subclass per method.

Every field is a CLI flag / YAML key through `transformers.HfArgumentParser`. Constraints
are checked in `__post_init__` with a `ValueError` naming the fields and their values.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field

from transformers import TrainingArguments

DEFAULT_STOP_SEQS = [
    "The answer is",
    "the answer is",
    "Answer:",
    "answer:",
    "**Answer",
    "Final answer:",
]
STOP_TOKEN_CHOICES = ("eos", "pad", "both")
DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class TrainerConfig(TrainingArguments):
    """Fields shared by every implicit_reasoning trainer (on top of all of `TrainingArguments`)."""

    # --- model ---
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Policy model: hub id or local dir. None = the built-in demo model."}
    )
    ref_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Frozen reference model; default: the same weights as the policy."}
    )
    checkpoint_path: str | None = field(
        default=None, metadata={"help": "Checkpoint dir to resume from (same as resume_from_checkpoint)."}
    )
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "eager | sdpa | flash_attention_2 (needs the `flash` extra)."}
    )
    torch_dtype: str = field(default="auto", metadata={"help": f"Weights dtype: {' | '.join(DTYPE_CHOICES)}."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Passed to from_pretrained."})
    # --- data ---
    dataset_name: str = field(
        default="gsm8k", metadata={"help": "Registry name (gsm8k, math, arc_challenge, arithmetic, ...) or a local file/dir."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub config / generator params of the dataset."})
    dataset_path: str | None = field(
        default=None, metadata={"help": "Local copy of a registry dataset with the hub schema (file or dir of splits)."}
    )
    sanity_check: bool = field(default=False, metadata={"help": "Use a tiny subset of every split, for debugging."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap on eval questions (None = all)."})
    cot_trigger: str = field(default="Let's think step by step.", metadata={"help": "Appended to every question."})
    num_evaluations: int = field(
        default=0, metadata={"help": "Evaluate this many times, evenly spaced over training (0 = use eval_strategy)."}
    )
    max_prompt_length: int = field(default=512, metadata={"help": "Prompts longer than this (tokens) are left-truncated."})
    # --- rollout ---
    rloo_k: int = field(default=4, metadata={"help": "Samples per prompt (K)."})
    rollout_batch_size: int = field(default=16, metadata={"help": "Rows per generation / scoring chunk."})
    response_length: int = field(default=256, metadata={"help": "Max new tokens of a sampled rationale."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of rollouts."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling of rollouts (1.0 = off)."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling of rollouts (0 = off)."})
    stop_token: str = field(default="eos", metadata={"help": "Which special token ends a rationale: eos | pad | both."})
    stop_token_ids: list[int] = field(default_factory=list, metadata={"help": "Extra token ids that end a rationale."})
    stop_seqs: list[str] = field(
        default_factory=lambda: list(DEFAULT_STOP_SEQS),
        metadata={"help": "Strings that end a rationale (the rationale excludes them)."},
    )
    kl_coef: float = field(default=0.05, metadata={"help": "beta: weight of the KL(pi || pi_ref) term."})
    # --- LoRA ---
    use_lora: bool = field(default=False, metadata={"help": "Train a LoRA adapter; the reference is the adapter-disabled base."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"], metadata={"help": "Module names for LoRA, or all-linear."}
    )
    # --- evaluation / logging ---
    eval_temperature: float = field(default=0.0, metadata={"help": "0 = greedy accuracy; > 0 samples."})
    eval_num_samples: int = field(default=1, metadata={"help": "k of maj@k self-consistency (1 = off)."})
    eval_max_new_tokens: int | None = field(
        default=None, metadata={"help": "New-token budget at eval (default: response_length + 32)."}
    )
    num_logged_samples: int = field(default=4, metadata={"help": "Rows of the samples table per logging step."})
    max_nonfinite_updates: int = field(
        default=10, metadata={"help": "Stop with an error after this many non-finite updates in a row."}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Kept False: the trainers read text columns."})

    def __post_init__(self):
        self._validate_shared()
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
        super().__post_init__()

    @property
    def samples_per_update(self) -> int:
        """Samples per device per optimizer update (LaTRO's batch semantics)."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    @property
    def dataset_kwargs(self) -> dict:
        """Keyword arguments of the registry loaders (`load_task_dataset`, `load_markovian_examples`)."""
        return dict(
            dataset_config=self.dataset_config,
            dataset_path=self.dataset_path,
            sanity_check=self.sanity_check,
            seed=self.seed,
        )

    @property
    def prompts_per_update(self) -> int:
        """Distinct prompts per device per update: samples_per_update / rloo_k."""
        return self.samples_per_update // self.rloo_k

    def _validate_shared(self) -> None:
        self._validate_rollout()
        self._validate_common()

    min_rloo_k = 2  # a leave-one-out baseline needs two samples per prompt

    def _validate_rollout(self) -> None:
        _check(self.rloo_k >= self.min_rloo_k, f"rloo_k={self.rloo_k}: must be >= {self.min_rloo_k} samples per prompt")
        _check(
            self.samples_per_update % self.rloo_k == 0,
            f"per_device_train_batch_size ({self.per_device_train_batch_size}) * gradient_accumulation_steps "
            f"({self.gradient_accumulation_steps}) = {self.samples_per_update} must be a multiple of "
            f"rloo_k ({self.rloo_k})",
        )
        _check(self.stop_token in STOP_TOKEN_CHOICES, f"stop_token={self.stop_token!r}: must be one of {STOP_TOKEN_CHOICES}")
        _check(self.temperature > 0, f"temperature={self.temperature}: must be > 0 (rollouts sample)")
        _check(0 < self.top_p <= 1, f"top_p={self.top_p}: must be in (0, 1]")
        _check(self.top_k >= 0, f"top_k={self.top_k}: must be >= 0 (0 = off)")

    def _validate_common(self) -> None:
        _check(self.torch_dtype in DTYPE_CHOICES, f"torch_dtype={self.torch_dtype!r}: must be one of {DTYPE_CHOICES}")
        for name in ("response_length", "rollout_batch_size", "max_prompt_length", "eval_num_samples"):
            _check(getattr(self, name) >= 1, f"{name}={getattr(self, name)}: must be >= 1")
        _check(self.eval_temperature >= 0, f"eval_temperature={self.eval_temperature}: must be >= 0")
        _check(self.kl_coef >= 0, f"kl_coef={self.kl_coef}: must be >= 0")
        _check(self.num_evaluations >= 0, f"num_evaluations={self.num_evaluations}: must be >= 0")
        _check(self.num_logged_samples >= 0, f"num_logged_samples={self.num_logged_samples}: must be >= 0")
        _check(self.max_nonfinite_updates >= 1, f"max_nonfinite_updates={self.max_nonfinite_updates}: must be >= 1")
        if self.use_lora:
            _check(
                self.ref_model_name_or_path is None,
                f"ref_model_name_or_path={self.ref_model_name_or_path!r} with use_lora=True: with LoRA the reference "
                "is the adapter-disabled base model; drop one of the two",
            )
            _check(self.lora_r >= 1, f"lora_r={self.lora_r}: must be >= 1 when use_lora=True")
            _check(0 <= self.lora_dropout < 1, f"lora_dropout={self.lora_dropout}: must be in [0, 1)")
        if self.attn_implementation == "flash_attention_2":
            _check(
                importlib.util.find_spec("flash_attn") is not None,
                "attn_implementation='flash_attention_2' needs flash-attn: pip install 'implicit-reasoning[flash]'",
            )


@dataclass
class LatroConfig(TrainerConfig):
    """LaTRO (arXiv 2411.04282): the model's own log-likelihood of the gold answer is the reward.

    Defaults follow the paper where it gives them (K=16, beta=0.05, lr 5e-7) except the
    rationale budget, which users set per dataset (the paper used 500 tokens on GSM8K).
    """

    rloo_k: int = field(default=16, metadata={"help": "Samples per prompt (K); the paper used 16."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Samples (not prompts) per micro-batch."})
    learning_rate: float = field(default=5e-7, metadata={"help": "The paper used 5e-7 for 7-8B models."})
    sft_coef: float = field(
        default=1.0,
        metadata={"help": "Weight of log pi(y|x,z) in the loss. The paper's gradient has it (1.0); its script shipped 0."},
    )
    non_stop_penalty: bool = field(
        default=True, metadata={"help": "Penalise rationales that never hit a stop within response_length."}
    )
    penalty_reward_value: float = field(
        default=2.0, metadata={"help": "A non-stopped sample's R becomes this x the mean R of its own group."}
    )

    def __post_init__(self):
        _check(self.sft_coef >= 0, f"sft_coef={self.sft_coef}: must be >= 0")
        _check(
            self.penalty_reward_value >= 1 or not self.non_stop_penalty,
            f"penalty_reward_value={self.penalty_reward_value}: must be >= 1 (R <= 0, so < 1 would reward non-stopping)",
        )
        super().__post_init__()


@dataclass
class SFTBaselineConfig(TrainerConfig):
    """Supervised fine-tuning on gold rationales (the baseline LaTRO is compared with).

    Shares the model / data / evaluation fields; the rollout fields are unused.
    """

    per_device_train_batch_size: int = field(default=8, metadata={"help": "Examples per micro-batch."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate."})

    def _validate_rollout(self) -> None:
        """No rollouts in SFT: K and the stop settings do not apply."""


MARKOVIAN_SCORERS = ("critic", "actor")
MARKOVIAN_METHODS = ("pg", "ppo", "ei")
MARKOVIAN_INSTRUCTION = "Produce minimal text which will help you answer the question."


@dataclass
class MarkovianConfig(TrainerConfig):
    """Markovian Transformers (arXiv 2404.18988): the answer is scored from the CoT alone.

    rloo_k = K samples per question: K >= 2 uses the within-group z-score advantage, K = 1
    an exponential moving baseline (`baseline_decay`). `response_length`, `stop_seqs` and
    `kl_coef` are unused: CoTs have exactly `cot_length` tokens and the KL weight is `kl_penalty`.
    """

    min_rloo_k = 1  # K = 1 uses the EMA baseline instead of a group statistic

    cot_length: int = field(default=50, metadata={"help": "Tokens in every CoT (fixed length: min = max new tokens)."})
    markovian: bool = field(
        default=True, metadata={"help": "Score the answer with the question redacted; False = non-Markovian ablation."}
    )
    scorer: str = field(
        default="critic", metadata={"help": f"Who scores log P(answer | CoT): {' | '.join(MARKOVIAN_SCORERS)}."}
    )
    method: str = field(
        default="pg",
        metadata={"help": "pg (policy gradient) | ppo (clipped, ppo_epochs passes) | ei (expert iteration)."},
    )
    kl_penalty: float = field(default=0.1, metadata={"help": "Weight of KL(actor || critic) over CoT positions."})
    entropy_bonus: float = field(default=0.0, metadata={"help": "Weight of the CoT entropy bonus (subtracted)."})
    ppo_epsilon: float = field(default=0.2, metadata={"help": "PPO clip range epsilon."})
    ppo_epochs: int = field(default=4, metadata={"help": "PPO: optimizer passes over each rollout."})
    ei_std: float = field(default=1.0, metadata={"help": "EI: keep R > mean + ei_std * std of the reward history."})
    ei_warmup: int = field(default=5, metadata={"help": "EI: batches of reward history before any sample is kept."})
    baseline_decay: float = field(default=0.9, metadata={"help": "EMA baseline decay (used when rloo_k = 1)."})
    actor_reward_weight: float = field(
        default=0.0, metadata={"help": "w: adds -w * R with R differentiable through the actor (needs scorer='actor')."}
    )
    question_length: int = field(default=200, metadata={"help": "wiki_* tasks: question chunk length in tokens."})
    target_length: int = field(default=200, metadata={"help": "wiki_continuation: answer chunk length in tokens."})
    instruction: str = field(default=MARKOVIAN_INSTRUCTION, metadata={"help": "Instruction that starts every prompt."})
    # --- vector quantisation variant ---
    use_vq: bool = field(default=False, metadata={"help": "Train through quantised hidden states instead of sampling."})
    vq_reason_length: int = field(default=50, metadata={"help": "VQ: number of placeholder (CoT) positions."})
    vq_codebook_weight: float = field(default=1.0, metadata={"help": "VQ: weight of MSE(h, e.detach())."})
    vq_sampling_temp: float = field(default=1.0, metadata={"help": "VQ: temperature on cosine similarities."})
    vq_hidden_layer: int = field(default=-1, metadata={"help": "VQ: hidden_states index (0 = embeddings, -1 = last)."})
    vq_use_argmax: bool = field(
        default=True, metadata={"help": "VQ: nearest embedding (with Gumbel: hard one-hot); False samples."}
    )
    vq_gumbel_softmax: bool = field(default=False, metadata={"help": "VQ: choose codes by Gumbel-softmax."})
    vq_gumbel_tau: float = field(default=1.0, metadata={"help": "VQ: Gumbel-softmax temperature tau."})

    def __post_init__(self):
        self._validate_markovian()
        super().__post_init__()

    def _validate_markovian(self) -> None:
        _check(self.scorer in MARKOVIAN_SCORERS, f"scorer={self.scorer!r}: must be one of {MARKOVIAN_SCORERS}")
        _check(self.method in MARKOVIAN_METHODS, f"method={self.method!r}: must be one of {MARKOVIAN_METHODS}")
        for name in ("cot_length", "ppo_epochs", "question_length", "target_length", "vq_reason_length"):
            _check(getattr(self, name) >= 1, f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("kl_penalty", "entropy_bonus", "actor_reward_weight", "ei_warmup", "vq_codebook_weight"):
            _check(getattr(self, name) >= 0, f"{name}={getattr(self, name)}: must be >= 0")
        for name in ("ppo_epsilon", "vq_sampling_temp", "vq_gumbel_tau"):
            _check(getattr(self, name) > 0, f"{name}={getattr(self, name)}: must be > 0")
        _check(math.isfinite(self.ei_std), f"ei_std={self.ei_std}: must be finite")
        _check(0 <= self.baseline_decay < 1, f"baseline_decay={self.baseline_decay}: must be in [0, 1)")
        _check(
            self.actor_reward_weight == 0 or self.scorer == "actor",
            f"actor_reward_weight={self.actor_reward_weight} > 0 requires scorer='actor' (got scorer={self.scorer!r})",
        )
        _check(
            not self.use_vq or self.method == "pg",
            f"use_vq=True trains by backpropagation through the critic; method={self.method!r} must stay 'pg'",
        )
        # read before TrainingArguments resolves the deprecated alias: either name turns checkpointing on
        checkpointing = bool(self.gradient_checkpointing or getattr(self, "activation_checkpointing", None))
        _check(
            not (self.use_vq and self.use_lora and checkpointing),
            "use_vq=True with use_lora=True and gradient_checkpointing=True (activation_checkpointing) is not "
            "supported: the critic forward runs with the adapter disabled, but checkpointing recomputes it during "
            "backward after the adapter is back on (an error, or wrong gradients). Drop one of the three",
        )

