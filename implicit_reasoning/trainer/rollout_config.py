"""`RolloutConfig`: the fields of trainers that sample rollouts at every update (LaTRO, Markovian, PPO)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base_config import TrainerConfig, check


@dataclass
class RolloutConfig(TrainerConfig):
    """Shared fields plus the rollout ones.

    Parameters that control the rollouts:
        ref_model_name_or_path, rloo_k, rollout_batch_size, temperature, top_p, top_k

    Batch semantics (LaTRO's): `per_device_train_batch_size * gradient_accumulation_steps`
    samples per device per update, a multiple of `rloo_k`; each update draws that / `rloo_k`
    prompts per device and samples each `rloo_k` times.
    """

    min_rloo_k = 2  # a leave-one-out baseline needs two samples per prompt (not a field: no annotation)

    ref_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Frozen reference model; default: the same weights as the policy."}
    )
    rloo_k: int = field(default=4, metadata={"help": "Samples per prompt (K)."})
    rollout_batch_size: int = field(default=16, metadata={"help": "Rows per generation / scoring chunk."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of rollouts."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling of rollouts (1.0 = off)."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling of rollouts (0 = off: the whole vocabulary)."})

    @property
    def samples_per_update(self) -> int:
        """Samples per device per optimizer update."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    @property
    def prompts_per_update(self) -> int:
        """Distinct prompts per device per update: samples_per_update / rloo_k."""
        return self.samples_per_update // self.rloo_k

    def eval_sampling(self) -> dict:
        """maj@k samples at eval_temperature, or at the rollout temperature when that is 0; rollout top-p / top-k."""
        return dict(temperature=self.eval_temperature or self.temperature, top_p=self.top_p, top_k=self.top_k)

    def validate(self) -> None:
        super().validate()
        check(self.rloo_k >= self.min_rloo_k, f"rloo_k={self.rloo_k}: must be >= {self.min_rloo_k} samples per prompt")
        check(
            self.samples_per_update % self.rloo_k == 0,
            f"per_device_train_batch_size ({self.per_device_train_batch_size}) * gradient_accumulation_steps "
            f"({self.gradient_accumulation_steps}) = {self.samples_per_update} must be a multiple of "
            f"rloo_k ({self.rloo_k})",
        )
        check(self.rollout_batch_size >= 1, f"rollout_batch_size={self.rollout_batch_size}: must be >= 1")
        check(self.temperature > 0, f"temperature={self.temperature}: must be > 0 (rollouts sample)")
        check(0 < self.top_p <= 1, f"top_p={self.top_p}: must be in (0, 1]")
        check(self.top_k >= 0, f"top_k={self.top_k}: must be >= 0 (0 = off)")
        check(
            not (self.use_lora and self.ref_model_name_or_path),
            f"ref_model_name_or_path={self.ref_model_name_or_path!r} with use_lora=True: with LoRA the reference "
            "is the adapter-disabled base model; drop one of the two",
        )
