"""LatroTrainer: Latent Reasoning Optimization (Chen et al., arXiv 2411.04282).

The model rewards itself: after sampling a rationale z for a question x, the reward is
its own log-likelihood of the gold answer y, log pi(y | x, z). One update:

    1. rollout    z_1..z_K ~ pi(. | x) for each prompt, truncated at the first stop
    2. reward     r_k = log pi(y | x, z_k) - beta * (log pi(z_k|x) - log pi_ref(z_k|x))
    3. advantage  A_k = r_k - mean_{j != k} r_j                      (RLOO)
    4. loss       -mean_k[ A_k * log pi(z_k|x) + sft_coef * log pi(y | x, z_k) ]

Forward work per sample: generation (whose raw logits give log pi(z|x)), a continuation of
generation's KV cache over y only (R), one reference forward over [x; z] and one forward with
grad over [x; z; y] for the update (`score_from_generation=False`: one no-grad policy pass over
[x; z; y] gives both policy terms instead). With `shared_prefill` each distinct prompt x is run
once and its KV cache copied to its K samples, in generation, the reference pass and (one process,
no checkpointing, no dropout) the grad pass. Every scoring pass sends only the hidden states of
the scored positions (rationale, answer) through the LM head, in chunks (`window_logprobs`), so
no (B, T, V) logits exist; log-probs are summed in float32.
"""

from __future__ import annotations

import torch

from ...data.registry import load_task_dataset
from ...objectives.advantages import find_stop_positions, kept_lengths, repeat_rows
from ...objectives.latro import latro_loss, latro_rewards
from ...runtime.models import (
    encode_continuation,
    encode_prompt,
    end_of_text_ids,
    eval_mode,
    stop_sequence_ids,
    stop_token_ids,
)
from ...scoring.logprobs import masked_sum, segment_reduce
from ...scoring.packing import pack_rows
from ...scoring.window import score_rows, window_logprobs
from ..core.curriculum import load_mixture
from ..core.docstrings import documented
from ..core.rollout_trainer import RolloutTrainer
from .config import LatroConfig

# Segment ids of a packed [x; z; y] row (pack_rows numbers segments from 1); rows align on z.
PROMPT, RATIONALE, ANSWER = 1, 2, 3
ROW_KEYS = ("input_ids", "attention_mask", "position_ids", "segment_ids")


@documented
class LatroTrainer(RolloutTrainer):
    """LaTRO on any causal LM. Datasets need string columns `queries`, `responses`, `groundtruth`."""

    trainer_name = "latro"
    config_class = LatroConfig
    required_columns = ("queries", "responses", "groundtruth")
    args: LatroConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        tokenizer = self.processing_class
        end_ids = end_of_text_ids(tokenizer, self.model)  # the model's end-of-turn ids are "eos" too
        self.stop_ids = stop_token_ids(tokenizer, self.args.stop_token, self.args.stop_token_ids, end_ids)
        self.stop_seq_ids = stop_sequence_ids(tokenizer, self.args.stop_seqs)

    @classmethod
    def load_split(cls, config: LatroConfig, split: str, tokenizer):
        """The `split` of `dataset_name`, or of every `datasets` entry (a mixture the curriculum samples)."""
        if not config.datasets:
            return super().load_split(config, split, tokenizer)
        kwargs = {**config.dataset_kwargs, "dataset_config": None, "dataset_path": None}
        return load_mixture(config, split, lambda entry: load_task_dataset(
            entry["name"], split, tokenizer, **{**kwargs, "dataset_config": entry["config"],
                                                "dataset_path": entry["path"]}))

    def difficulty_texts(self, rows: dict[str, list]) -> tuple[list[str], list[str]]:
        """A question's difficulty: the loss of its gold response right after the prompt."""
        return rows["queries"], rows["responses"]

    def make_rollout(self, prompts: dict[str, list]) -> dict:
        args, tokenizer, k = self.args, self.processing_class, self.args.rloo_k
        x = [encode_prompt(tokenizer, q, args.max_prompt_length) for q in prompts["queries"]]
        y = [encode_continuation(tokenizer, r, append_eos=True) for r in prompts["responses"]]

        # 1. rollout: K rationales per prompt, cut at the first stop token / stop sequence. Generation's own
        #    raw logits give log pi(z|x), and its KV cache continued over y gives R (no pass over [x;z;y])
        xs, ys = repeat_rows(x, k), repeat_rows(y, k)
        stop = (self.stop_ids, self.stop_seq_ids)
        scored = self.sample_scored(x, k, args.response_length, *stop, answers=ys,
                                    kept_length=lambda t: kept_lengths(t, *stop)) if args.score_from_generation else None
        generated = scored.tokens if scored is not None else self.sample(x, k, args.response_length, *stop)
        stops = find_stop_positions(generated, *stop)
        z = [row[:s].tolist() if s >= 0 else row.tolist() for row, s in zip(generated, stops.tolist())]

        # 2. reward: R = log pi(y|x,z), log pi(z|x) (from generation, else one policy pass), log pi_ref(z|x)
        pad = tokenizer.pad_token_id
        rows = pack_rows([xs, z, ys], pad, align=RATIONALE - 1)
        policy = self._policy_scores(rows, scored, z)
        with self.reference_model() as ref:
            reference = score_rows(ref, pack_rows([xs, z], pad, align=RATIONALE - 1), (RATIONALE,),
                                   args.rollout_batch_size, shared_prefill=self.share_prefill)
        out = latro_rewards(
            policy[ANSWER],
            policy[RATIONALE],
            reference[RATIONALE],
            stopped=stops >= 0,
            k=k,
            kl_coef=args.kl_coef,
            non_stop_penalty=args.non_stop_penalty,
            penalty_reward_value=args.penalty_reward_value,
        )
        self.check_rewards(out["r"])
        # 3. advantage: RLOO within each prompt's K samples (computed in latro_rewards, detached)
        self._log_rollout(out, stops, z, prompts, k)
        device = self.accelerator.device
        return {**{key: rows[key].to(device) for key in ROW_KEYS}, "advantages": out["A"].detach().to(device)}

    def _policy_scores(self, rows: dict, scored, z: list[list[int]]) -> dict[int, torch.Tensor]:
        """{RATIONALE: log pi(z|x), ANSWER: log pi(y|x,z)} per sample, float32."""
        if scored is None or scored.failure is not None:
            with eval_mode(self.model):
                return score_rows(self.model, rows, (RATIONALE, ANSWER), self.args.rollout_batch_size,
                                  shared_prefill=self.share_prefill)
        lengths = torch.tensor([len(r) for r in z])
        kept = torch.arange(scored.token_logps.shape[1]) < lengths.unsqueeze(1)
        return {RATIONALE: masked_sum(scored.token_logps, kept, dim=1), ANSWER: scored.answer_logps}

    def compute_objective(self, model, batch: dict) -> dict[str, torch.Tensor]:
        # 4. loss = -mean_k[A_k log pi(z_k|x) + sft_coef log pi(y|x,z_k)], one forward with grad
        segments = batch["segment_ids"]
        # LM head on the rationale and answer positions only, in chunks: no (B, W, V) logits in either pass; each
        # distinct prompt run once where that is exact (`share_prefill_with_grad`)
        logps, window = window_logprobs(model, batch, (segments == RATIONALE) | (segments == ANSWER),
                                        shared_prefill=self.share_prefill_with_grad)
        return latro_loss(
            batch["advantages"],
            segment_reduce(logps, window["segment_ids"], RATIONALE),
            segment_reduce(logps, window["segment_ids"], ANSWER),
            self.args.sft_coef,
        )

    def _log_rollout(self, out: dict, stops: torch.Tensor, z: list[list[int]], prompts: dict, k: int) -> None:
        lengths = torch.tensor([len(r) for r in z], dtype=torch.float)
        for name, value in (
            ("reward", out["R"]),
            ("kl", out["kl"]),
            ("r", out["r"]),
            ("advantage_mean", out["A"].mean()),
            ("rationale_length", lengths),
            ("stop_fraction", (stops >= 0).float()),
        ):
            if torch.isfinite(value).all():
                self.log_metric(name, value)
        if torch.isfinite(out["A"]).all():
            self.log_metric_std("advantage_std", out["A"])
        rationales = self.processing_class.batch_decode(z[: self.args.num_logged_samples], skip_special_tokens=True)
        self.record_samples(
            [
                {
                    "prompt": prompts["queries"][i // k],
                    "rationale": rationale,
                    "answer": prompts["responses"][i // k],
                    "reward": float(out["R"][i]),
                    "advantage": float(out["A"][i]),
                }
                for i, rationale in enumerate(rationales)
            ]
        )
