"""`PPOCurriculumConfig`: PPO with a value network and KL control, on a curriculum-weighted data mixture."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.base_config import ReasoningPromptFields, check
from ..core.curriculum_config import CurriculumFields
from ..core.docstrings import documented
from ..core.rollout_config import RolloutConfig


@documented
@dataclass
class PPOCurriculumConfig(ReasoningPromptFields, CurriculumFields, RolloutConfig):
    """PPO (Schulman et al. 2017) for language models with an adaptive KL penalty (Ziegler et al. 2019).

    Parameters that control the rollouts:
        prompt_length, response_length (from ReasoningPromptFields, with cot_trigger for QA
        datasets), temperature, top_p, top_k, rollout_batch_size, score_from_generation
    Parameters that control the rewards:
        reward_funcs, reward_weights, kl_coef, adaptive_kl, kl_target, kl_horizon
    Parameters that control PPO:
        ppo_epochs, num_mini_batches, gamma, lam, cliprange, cliprange_value, vf_coef,
        whiten_advantages, early_stop_kl, value_model_name_or_path
    Parameters that control the mixture (CurriculumFields):
        datasets, curriculum_rule, curriculum_eta, curriculum_floor, difficulty_sample_size,
        difficulty_interval, freeze_interval
    Parameters that control evaluation:
        validation_dataset, test_prompts

    Batch semantics: one rollout holds `per_device_train_batch_size * gradient_accumulation_steps
    * num_mini_batches` completions per device (one per prompt); each optimizer update uses one
    minibatch; a rollout serves `ppo_epochs * num_mini_batches` updates.
    """

    value_types = {"validation_dataset": str | dict | None}  # field_checks: a YAML / Python entry may be a mapping

    prompt_length: int = field(default=64, metadata={"help": "Raw-text datasets: the prompt is a text's first this many tokens."})
    response_length: int = field(default=64, metadata={"help": "New tokens per completion."})
    ppo_epochs: int = field(default=4, metadata={"help": "Passes over each rollout."})
    num_mini_batches: int = field(default=1, metadata={"help": "Minibatches (= optimizer updates) per pass."})
    gamma: float = field(
        default=1.0,
        metadata={"help": "Discount over tokens; 1.0: the sequence reward at the last token is not shrunk by length."},
    )
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    cliprange: float = field(default=0.2, metadata={"help": "Policy ratio clip epsilon."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Value clip: |V - V_old| <= this."})
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss."})
    kl_coef: float = field(default=0.05, metadata={"help": "beta: per-token KL(pi || pi_ref) penalty (initial value)."})
    adaptive_kl: bool = field(default=False, metadata={"help": "Adapt beta toward kl_target (Ziegler et al. 2019)."})
    kl_target: float = field(default=6.0, metadata={"help": "Target sequence KL(pi || pi_ref) in nats (adaptive_kl)."})
    kl_horizon: int = field(default=10000, metadata={"help": "Horizon of the adaptive controller, in samples."})
    whiten_advantages: bool = field(
        default=True, metadata={"help": "Normalise advantages over the rollout (all processes) to mean 0, std 1."}
    )
    early_stop_kl: float | None = field(
        default=None,
        metadata={"help": "Stop a rollout's remaining updates when an update's approx KL(pi_old || pi) per token "
                          "exceeds 1.5 x this; None = never."},
    )
    score_from_generation: bool = field(
        default=True,
        metadata={"help": "Old log-probs from generation's own logits at the sampling temperature (no policy pass "
                  "over the rollout; the value network still runs); False = one no-grad policy pass."},
    )
    value_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Value network backbone; default: a copy of the policy's with a new head."}
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["repetition_penalty"],
        metadata={"help": "Built-in names (repetition_penalty, answer_accuracy, continuation_loglik) or "
                          "'module:function' callables f(prompts, completions, **columns)."},
    )
    reward_weights: list[float] | None = field(
        default=None, metadata={"help": "One weight per reward function (default: 1 each)."}
    )
    validation_dataset: str | None = field(
        default=None,
        metadata={"help": "A datasets-style entry whose eval split gives the validation loss; None = the mixture's."},
    )
    test_prompts: list[str] = field(
        default_factory=list, metadata={"help": "Prompts completed at every evaluation (written to the output dir)."}
    )
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Completions per micro-batch."})
    metric_for_best_model: str | None = field(
        default="loss", metadata={"help": "The best checkpoint is the one with the lowest validation loss."}
    )
    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate (policy and value)."})

    @property
    def prompts_per_rollout(self) -> int:
        return self.samples_per_update * self.num_mini_batches

    def validate(self) -> None:
        super().validate()
        for name in ("prompt_length", "ppo_epochs", "num_mini_batches", "kl_horizon"):
            check(getattr(self, name) >= 1, f"{name}={getattr(self, name)}: must be >= 1")
        check(0 <= self.gamma <= 1, f"gamma={self.gamma}: must be in [0, 1]")
        check(0 <= self.lam <= 1, f"lam={self.lam}: must be in [0, 1]")
        for name in ("cliprange", "cliprange_value", "kl_target"):
            check(getattr(self, name) > 0, f"{name}={getattr(self, name)}: must be > 0")
        for name in ("vf_coef", "kl_coef"):
            check(getattr(self, name) >= 0, f"{name}={getattr(self, name)}: must be >= 0")
        check(self.early_stop_kl is None or self.early_stop_kl > 0, f"early_stop_kl={self.early_stop_kl}: must be > 0")
        check(bool(self.reward_funcs), "reward_funcs: at least one reward function is needed")
        # reward_weights vs the functions is checked by the trainer: Python callers may pass other functions
        check(not self.adaptive_kl or self.kl_coef > 0,
              f"kl_coef={self.kl_coef} with adaptive_kl=True: the controller scales beta, so it must start > 0")
