"""`STaRConfig`: STaR (arXiv 2203.14465) with SFT or DPO (+NLL), on top of the shared fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...objectives.star import step_schedule
from ..core.base_config import ReasoningPromptFields, SamplingFields, TrainerConfig, check
from ..core.docstrings import documented

STAR_STRATEGIES = ("sft", "dpo")
STAR_COT_TRIGGER = 'Think step by step. On the last line, write "Answer: " and the answer.'


@documented
@dataclass
class STaRConfig(ReasoningPromptFields, SamplingFields, TrainerConfig):
    """Outer iterations of generate -> filter -> rationalize -> train -> validate.

    Parameters that control the iterations:
        num_iterations, start_steps, step_growth, reset_model_every_iteration
    Parameters that control generation:
        samples_per_train_question, rationalize, gen_batch_size, preload_generated, single_batch,
        cot_trigger, response_length, temperature, top_p, top_k
    Parameters that control training:
        train_strategy, dpo_beta, rpo_alpha, rpo_token_mean
    Parameters that control validation:
        val_every_n_steps, skip_first_validation

    The step budget of iteration n is floor(start_steps * step_growth ** n); `max_steps` is their
    sum (`schedule`), set from them.
    """

    cot_trigger: str = field(default=STAR_COT_TRIGGER, metadata={"help": "Line after every question."})
    num_iterations: int = field(default=3, metadata={"help": "STaR iterations (generate, filter, train, validate)."})
    samples_per_train_question: int = field(
        default=1, metadata={"help": "Rationales sampled per train question each iteration (DPO needs >= 2)."}
    )
    rationalize: bool = field(
        default=True,
        metadata={"help": "Regenerate unsolved questions with the gold answer as a hint; keep correct ones, stored "
                          "with the hint-free prompt."},
    )
    train_strategy: str = field(default="sft", metadata={"help": "sft (NLL on kept rationales) | dpo (correct vs "
                                                                 "incorrect pairs)."})
    dpo_beta: float = field(default=0.1, metadata={"help": "DPO beta."})
    rpo_alpha: float = field(
        default=0.0, metadata={"help": "Weight of the chosen rationale's length-normalised NLL added to DPO (0 = "
                                       "plain DPO)."}
    )
    rpo_token_mean: bool = field(
        default=False, metadata={"help": "rpo_alpha's NLL as one token mean over the update's chosen rationales "
                                         "(TRL's convention) instead of each rationale's own token mean (RPO paper)."}
    )
    reset_model_every_iteration: bool = field(
        default=True, metadata={"help": "Train each iteration from the ORIGINAL weights (the paper); generation "
                                        "uses the previous iteration's model."}
    )
    start_steps: int = field(default=40, metadata={"help": "Optimizer steps of the first iteration."})
    step_growth: float = field(default=1.2, metadata={"help": "Each iteration trains this many times more steps."})
    gen_batch_size: int = field(default=32, metadata={"help": "Rows per generation / scoring batch."})
    preload_generated: str | None = field(
        default=None, metadata={"help": "A saved iteration_<n>/generated.jsonl: iteration 0 trains on it, no "
                                        "generation."}
    )
    single_batch: bool = field(
        default=False, metadata={"help": "Debugging: generate for one gen_batch_size of questions and overfit it."}
    )
    val_every_n_steps: int = field(
        default=0, metadata={"help": "Validate every this many steps (0 = only at the end of each iteration)."}
    )
    skip_first_validation: bool = field(
        default=False, metadata={"help": "Do not validate before the first iteration trains."}
    )

    def __post_init__(self):
        self.check_values()  # the fields read below have their declared types
        schedule = step_schedule(self.num_iterations, self.start_steps, self.step_growth) if self._schedule_ok() else []
        total = sum(schedule)
        check(
            self.max_steps in (-1, 0, total) or not schedule,
            f"max_steps={self.max_steps}: STaR derives it from num_iterations={self.num_iterations}, "
            f"start_steps={self.start_steps}, step_growth={self.step_growth} (= {total}); leave it unset",
        )
        self.max_steps = total
        if self.val_every_n_steps > 0:
            self.eval_strategy, self.eval_steps = "steps", self.val_every_n_steps
        self.eval_on_start = not self.skip_first_validation
        if self.metric_for_best_model is None:
            self.metric_for_best_model, self.greater_is_better = "accuracy", True
        super().__post_init__()

    def _schedule_ok(self) -> bool:
        return self.num_iterations >= 1 and self.start_steps >= 1 and self.step_growth > 0

    @property
    def schedule(self) -> list[int]:
        """Optimizer steps of each iteration."""
        return step_schedule(self.num_iterations, self.start_steps, self.step_growth)

    def validate(self) -> None:
        super().validate()
        for name in ("num_iterations", "samples_per_train_question", "start_steps", "gen_batch_size"):
            check(getattr(self, name) >= 1, f"{name}={getattr(self, name)}: must be >= 1")
        check(self.step_growth >= 1, f"step_growth={self.step_growth}: must be >= 1 (the budget grows)")
        check(self.train_strategy in STAR_STRATEGIES,
              f"train_strategy={self.train_strategy!r}: must be one of {STAR_STRATEGIES}")
        check(self.dpo_beta > 0, f"dpo_beta={self.dpo_beta}: must be > 0")
        check(self.rpo_alpha >= 0, f"rpo_alpha={self.rpo_alpha}: must be >= 0")
        check(self.val_every_n_steps >= 0, f"val_every_n_steps={self.val_every_n_steps}: must be >= 0")
        check(
            self.train_strategy != "dpo" or self.samples_per_train_question >= 2,
            f"train_strategy='dpo' pairs a question's correct and incorrect samples: samples_per_train_question="
            f"{self.samples_per_train_question} must be >= 2",
        )
        check(not self.rpo_token_mean or self.rpo_alpha > 0,
              f"rpo_token_mean=True normalises rpo_alpha's NLL term: it needs rpo_alpha > 0 (got {self.rpo_alpha})")
        defaults = type(self).__dataclass_fields__
        for name in ("dpo_beta", "rpo_alpha", "rpo_token_mean"):  # DPO settings would silently do nothing under SFT
            check(
                self.train_strategy == "dpo" or getattr(self, name) == defaults[name].default,
                f"{name}={getattr(self, name)} is a DPO setting: it needs train_strategy='dpo' "
                f"(got {self.train_strategy!r})",
            )
