"""`LatroConfig`: LaTRO (arXiv 2411.04282) fields on top of the shared and rollout ones."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.base_config import ReasoningPromptFields, check
from ..core.curriculum_config import CurriculumFields
from ..core.docstrings import documented
from ..core.rollout_config import GroupRolloutConfig

DEFAULT_STOP_SEQS = ["The answer is", "the answer is", "Answer:", "answer:", "**Answer", "Final answer:"]
STOP_TOKEN_CHOICES = ("eos", "pad", "both")


@documented
@dataclass
class LatroConfig(ReasoningPromptFields, CurriculumFields, GroupRolloutConfig):
    """LaTRO: the model's own log-likelihood of the gold answer is the reward.

    Parameters that control the rationale:
        cot_trigger, response_length, stop_token, stop_token_ids, stop_seqs
    Parameters that control the objective:
        kl_coef, sft_coef, non_stop_penalty, penalty_reward_value, score_from_generation
    Parameters of a data mixture (CurriculumFields; off without `datasets`):
        datasets, curriculum_rule, curriculum_eta, curriculum_floor, difficulty_sample_size,
        difficulty_interval, freeze_interval

    Defaults follow the paper where it gives them (K=16, beta=0.05, lr 5e-7) except the
    rationale budget, which users set per dataset (the paper used 500 tokens on GSM8K).
    """

    rloo_k: int = field(default=16, metadata={"help": "Samples per prompt (K); the paper used 16."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Samples (not prompts) per micro-batch."})
    learning_rate: float = field(default=5e-7, metadata={"help": "The paper used 5e-7 for 7-8B models."})
    stop_token: str = field(default="eos", metadata={"help": "Which special token ends a rationale: eos | pad | both."})
    stop_token_ids: list[int] = field(default_factory=list, metadata={"help": "Extra token ids that end a rationale."})
    stop_seqs: list[str] = field(
        default_factory=lambda: list(DEFAULT_STOP_SEQS),
        metadata={"help": "Strings that end a rationale (the rationale excludes them)."},
    )
    kl_coef: float = field(default=0.05, metadata={"help": "beta: weight of log pi(z|x) - log pi_ref(z|x) in the reward."})
    sft_coef: float = field(
        default=1.0,
        metadata={"help": "Weight of log pi(y|x,z) in the loss. The paper's gradient has it (1.0); its script shipped 0."},
    )
    score_from_generation: bool = field(
        default=True,
        metadata={"help": "Take log pi(z|x) from generation's own logits and log pi(y|x,z) by continuing its KV cache "
                  "over y (no policy pass over [x;z;y]); False = one no-grad policy pass. Falls back to the pass "
                  "where the cache cannot be continued (another generation backend, an unsupported cache)."},
    )
    non_stop_penalty: bool = field(
        default=True, metadata={"help": "Penalise rationales that never hit a stop within response_length."}
    )
    penalty_reward_value: float = field(
        default=2.0, metadata={"help": "A non-stopped sample's R becomes this x the mean R of its own group."}
    )

    def validate(self) -> None:
        super().validate()
        check(self.stop_token in STOP_TOKEN_CHOICES, f"stop_token={self.stop_token!r}: must be one of {STOP_TOKEN_CHOICES}")
        check(self.kl_coef >= 0, f"kl_coef={self.kl_coef}: must be >= 0")
        check(self.sft_coef >= 0, f"sft_coef={self.sft_coef}: must be >= 0")
        check(
            self.penalty_reward_value >= 1 or not self.non_stop_penalty,
            f"penalty_reward_value={self.penalty_reward_value}: must be >= 1 (R <= 0, so < 1 would reward non-stopping)",
        )
