"""`RolloutConfig`: the fields of trainers that sample rollouts at every update (PPO); `GroupRolloutConfig` adds
K samples per prompt (LaTRO, Markovian)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base_config import SamplingFields, TrainerConfig, check
from .docstrings import documented


@documented
@dataclass
class RolloutConfig(SamplingFields, TrainerConfig):
    """Shared fields plus the rollout ones (and `temperature`, `top_p`, `top_k` from `SamplingFields`).

    Parameters that control the rollouts:
        ref_model_name_or_path, rollout_batch_size, shared_prefill, temperature, top_p, top_k

    Batch semantics: `per_device_train_batch_size * gradient_accumulation_steps` samples per
    device per update, `samples_per_prompt` of them from each prompt (1 here; K = `rloo_k`
    in `GroupRolloutConfig`).
    """

    ref_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Frozen reference model; default: the same weights as the policy."}
    )
    rollout_batch_size: int = field(default=16, metadata={"help": "Rows per generation / scoring chunk."})
    shared_prefill: bool = field(default=True, metadata={
        "help": "Run each distinct prompt of a generation / no-grad scoring chunk once and copy its KV cache to its "
                "samples (generation_backend='hf'; off under ZeRO-3). False: every sample runs its prompt (the same "
                "samples; log-probs equal up to float rounding)."})

    @property
    def samples_per_prompt(self) -> int:
        """Completions sampled from each prompt."""
        return 1

    @property
    def samples_per_update(self) -> int:
        """Samples per device per optimizer update."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    @property
    def prompts_per_update(self) -> int:
        """Distinct prompts per device per update: samples_per_update / samples_per_prompt."""
        return self.samples_per_update // self.samples_per_prompt

    @property
    def prompts_per_rollout(self) -> int:
        """Prompts per device that one rollout generates from (PPO: every minibatch of the rollout's)."""
        return self.prompts_per_update

    def validate(self) -> None:
        super().validate()
        check(self.rollout_batch_size >= 1, f"rollout_batch_size={self.rollout_batch_size}: must be >= 1")
        check(
            not (self.use_lora and self.ref_model_name_or_path),
            f"ref_model_name_or_path={self.ref_model_name_or_path!r} with use_lora=True: with LoRA the reference "
            "is the adapter-disabled base model; drop one of the two",
        )


@documented
@dataclass
class GroupRolloutConfig(RolloutConfig):
    """Rollouts of K = `rloo_k` samples per prompt (LaTRO's RLOO groups, Markovian's z-score groups).

    Parameters that control the groups:
        rloo_k

    Each update draws `per_device_train_batch_size * gradient_accumulation_steps / rloo_k`
    prompts per device and samples each `rloo_k` times.
    """

    min_rloo_k = 2  # a leave-one-out baseline needs two samples per prompt (not a field: no annotation)

    rloo_k: int = field(default=4, metadata={"help": "Samples per prompt (K)."})

    @property
    def samples_per_prompt(self) -> int:
        return self.rloo_k

    def validate(self) -> None:
        super().validate()
        check(self.rloo_k >= self.min_rloo_k, f"rloo_k={self.rloo_k}: must be >= {self.min_rloo_k} samples per prompt")
        check(
            self.samples_per_update % self.rloo_k == 0,
            f"per_device_train_batch_size ({self.per_device_train_batch_size}) * gradient_accumulation_steps "
            f"({self.gradient_accumulation_steps}) = {self.samples_per_update} must be a multiple of "
            f"rloo_k ({self.rloo_k})",
        )
