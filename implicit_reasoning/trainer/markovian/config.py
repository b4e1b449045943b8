"""`MarkovianConfig`: Markovian Transformers (arXiv 2404.18988) fields on top of the shared and rollout ones."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, fields

from ...objectives.markovian import ANSWER_MARKER, REASONING_PREFIX
from ..core.base_config import check
from ..core.docstrings import documented
from ..core.rollout_config import GroupRolloutConfig

MARKOVIAN_SCORERS = ("critic", "actor")
COT_END_OF_TURN = ("suppress", "stop", "ignore")
MARKOVIAN_METHODS = ("pg", "ppo", "ei")
MARKOVIAN_INSTRUCTION = "Produce minimal text which will help you answer the question."
# settings of the sampled-CoT objective that the VQ variant does not use
VQ_IGNORED = ("method", "markovian", "scorer", "actor_reward_weight", "kl_penalty", "entropy_bonus", "cot_length",
              "temperature", "top_p", "top_k", "ppo_epsilon", "ppo_epochs", "ei_std", "ei_warmup", "cot_end_of_turn")


@documented
@dataclass
class MarkovianConfig(GroupRolloutConfig):
    """The answer is scored from the CoT alone (the question redacted).

    Parameters that control the CoT and its reward:
        cot_length, cot_end_of_turn, markovian, scorer, instruction, reasoning_prefix, answer_marker,
        question_length, target_length
    Parameters that control the objective:
        method, kl_penalty, entropy_bonus, ppo_epsilon, ppo_epochs, ei_std, ei_warmup,
        baseline_decay, actor_reward_weight
    Parameters of the vector-quantised variant:
        use_vq, vq_reason_length, vq_codebook_weight, vq_sampling_temp, vq_hidden_layer,
        vq_use_argmax, vq_gumbel_softmax, vq_gumbel_tau

    rloo_k = K samples per question: K >= 2 uses the within-group z-score advantage, K = 1
    an exponential moving baseline (`baseline_decay`). CoTs have exactly `cot_length`
    tokens (`cot_end_of_turn="suppress"`: the model's end-of-text / end-of-turn ids cannot be sampled inside
    it, as in the paper's code; "stop": it ends at the first of them, after at least one token; "ignore":
    they are ordinary tokens); the KL weight is `kl_penalty` (KL to the critic over the full vocabulary).
    """

    min_rloo_k = 1  # K = 1 uses the EMA baseline instead of a group statistic

    cot_length: int = field(default=50, metadata={"help": "Tokens in every CoT (fixed length: min = max new tokens)."})
    cot_end_of_turn: str = field(
        default="suppress",
        metadata={"help": "The model's end-of-text / end-of-turn ids inside a CoT: suppress (never sampled: exactly "
                          "cot_length tokens of the model's own turn) | stop (the CoT ends at the first one, after at "
                          "least one token) | ignore (ordinary tokens: a chat model may write past its turn)."},
    )
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
    reasoning_prefix: str = field(
        default=REASONING_PREFIX, metadata={"help": "Text after the question line, before the CoT (plain text: "
                                                    "\"{instruction} {question}\\n{reasoning_prefix}\")."}
    )
    answer_marker: str = field(
        default=ANSWER_MARKER, metadata={"help": "Text between the CoT and \" \" + answer in the scoring context."}
    )
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
        self.check_values()  # the fields read below have their declared types
        # the VQ loss never touches the LM head (untied models) nor the layers above vq_hidden_layer;
        # DDP must then look for unused parameters (HF turns the search off with gradient checkpointing)
        if self.use_vq and self.ddp_find_unused_parameters is None:
            self.ddp_find_unused_parameters = True
        super().__post_init__()

    @property
    def dataset_kwargs(self) -> dict:
        """Registry loader arguments; wiki tasks are sliced into question_length / target_length tokens."""
        return {**super().dataset_kwargs, "question_length": self.question_length, "target_length": self.target_length}

    def _validate_vq(self) -> None:
        """The VQ variant trains by backpropagation through the critic's answer NLL: the sampled-CoT
        settings would silently do nothing, so a non-default value is an error."""
        check(self.vq_hidden_layer != 0, "vq_hidden_layer=0 is the placeholder embedding itself: it cannot depend "
                                         "on the question; use a layer >= 1 (or -1, the last)")
        defaults = {f.name: f.default for f in fields(MarkovianConfig) if f.name in VQ_IGNORED}
        changed = [name for name, default in defaults.items() if getattr(self, name) != default]
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in changed)
        check(
            not changed,
            f"use_vq=True trains by backpropagation through the critic, so {values} would have no effect; "
            f"leave {', '.join(changed)} at the default",
        )
        if self.rloo_k > 1 and self.vq_use_argmax and not self.vq_gumbel_softmax:
            warnings.warn(f"use_vq=True with argmax codes: the rloo_k={self.rloo_k} rows of a question get the same codes "
                          "and the same loss, so they only repeat work (and leave fewer questions per batch); set "
                          "rloo_k=1, or sample codes (vq_use_argmax=False or vq_gumbel_softmax=True)", stacklevel=3)

    def validate(self) -> None:
        super().validate()
        check(self.scorer in MARKOVIAN_SCORERS, f"scorer={self.scorer!r}: must be one of {MARKOVIAN_SCORERS}")
        check(self.method in MARKOVIAN_METHODS, f"method={self.method!r}: must be one of {MARKOVIAN_METHODS}")
        check(self.cot_end_of_turn in COT_END_OF_TURN,
              f"cot_end_of_turn={self.cot_end_of_turn!r}: must be one of {COT_END_OF_TURN}")
        for name in ("reasoning_prefix", "answer_marker"):
            value = getattr(self, name)
            check(isinstance(value, str), f"{name}={value!r}: must be a string (an empty YAML value is null)")
        check(self.answer_marker.strip() != "", "answer_marker must hold text (the answer is scored after it)")
        for name in ("cot_length", "ppo_epochs", "question_length", "target_length", "vq_reason_length"):
            check(getattr(self, name) >= 1, f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("kl_penalty", "entropy_bonus", "actor_reward_weight", "ei_warmup", "vq_codebook_weight"):
            check(getattr(self, name) >= 0, f"{name}={getattr(self, name)}: must be >= 0")
        for name in ("ppo_epsilon", "vq_sampling_temp", "vq_gumbel_tau"):
            check(getattr(self, name) > 0, f"{name}={getattr(self, name)}: must be > 0")
        check(math.isfinite(self.ei_std), f"ei_std={self.ei_std}: must be finite")
        check(0 <= self.baseline_decay < 1, f"baseline_decay={self.baseline_decay}: must be in [0, 1)")
        check(
            self.actor_reward_weight == 0 or self.scorer == "actor",
            f"actor_reward_weight={self.actor_reward_weight} > 0 requires scorer='actor' (got scorer={self.scorer!r})",
        )
        if self.use_vq:
            self._validate_vq()
        # read before TrainingArguments resolves the deprecated alias: either name turns checkpointing on
        checkpointing = bool(self.gradient_checkpointing or getattr(self, "activation_checkpointing", None))
        check(
            not (self.use_vq and self.use_lora and checkpointing),
            "use_vq=True with use_lora=True and gradient_checkpointing=True (activation_checkpointing) is not "
            "supported: the critic forward runs with the adapter disabled, but checkpointing recomputes it during "
            "backward after the adapter is back on (an error, or wrong gradients). Drop one of the three",
        )
