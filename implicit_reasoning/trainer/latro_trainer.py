"""LatroTrainer: Latent Reasoning Optimization (Chen et al., arXiv 2411.04282).

The model rewards itself: after sampling a rationale z for a question x, the reward is
its own log-likelihood of the gold answer y, log pi(y | x, z). One update:

    1. rollout    z_1..z_K ~ pi(. | x) for each prompt, truncated at the first stop
    2. reward     r_k = log pi(y | x, z_k) - beta * (log pi(z_k|x) - log pi_ref(z_k|x))
    3. advantage  A_k = r_k - mean_{j != k} r_j                      (RLOO)
    4. loss       -mean_k[ A_k * log pi(z_k|x) + sft_coef * log pi(y | x, z_k) ]

Scoring costs one no-grad policy forward over [x; z; y] (both log pi(z|x) and R), one
reference forward over [x; z], and the update one forward with grad over [x; z; y].
"""

from __future__ import annotations

import torch

from ..utils.latro import latro_loss, latro_rewards
from ..utils.model_utils import encode_continuation, encode_prompt
from ..utils.rollout import find_stop_positions, pack_segments, score_segments, segment_sums, token_logprobs
from .base_trainer import BaseTrainer
from .trainer_config import LatroConfig

# Segment ids of a packed [x; z; y] row (pack_segments numbers segments from 1).
PROMPT, RATIONALE, ANSWER = 1, 2, 3


class LatroTrainer(BaseTrainer):
    """LaTRO on any causal LM. Datasets need string columns `queries`, `responses`, `groundtruth`."""

    required_columns = ("queries", "responses", "groundtruth")
    args: LatroConfig

    def make_rollout(self, prompts: dict[str, list]) -> dict:
        args, tokenizer, k = self.args, self.processing_class, self.args.rloo_k
        x = [encode_prompt(tokenizer, q, args.max_prompt_length) for q in prompts["queries"]]
        y = [encode_continuation(tokenizer, r, append_eos=True) for r in prompts["responses"]]

        # 1. rollout: K rationales per prompt, cut at the first stop token / stop sequence
        generated = self.sample(x, k)
        stops = find_stop_positions(generated, self.stop_ids, self.stop_seq_ids)
        z = [row[:s].tolist() if s >= 0 else row.tolist() for row, s in zip(generated, stops.tolist())]
        xs, ys = _repeat(x, k), _repeat(y, k)

        # 2. reward: R = log pi(y|x,z) and log pi(z|x) from one pass, log pi_ref(z|x) from another
        ids, mask, segments = pack_segments([xs, z, ys], tokenizer.pad_token_id)
        policy = self._score(self.model, ids, mask, segments, (RATIONALE, ANSWER))
        ref_ids, ref_mask, ref_segments = pack_segments([xs, z], tokenizer.pad_token_id)
        with self.reference_model() as ref:
            reference = self._score(ref, ref_ids, ref_mask, ref_segments, (RATIONALE,))
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
        # 3. advantage: RLOO within each prompt's K samples (computed in latro_rewards, detached)
        self._log_rollout(out, stops, z, prompts, k)
        device = self.accelerator.device
        return {
            "input_ids": ids.to(device),
            "attention_mask": mask.to(device),
            "segment_ids": segments.to(device),
            "advantages": out["A"].detach().to(device),
        }

    def compute_objective(self, model, batch: dict) -> dict[str, torch.Tensor]:
        # 4. loss = -mean_k[A_k log pi(z_k|x) + sft_coef log pi(y|x,z_k)], one forward with grad
        width = int(batch["attention_mask"].sum(dim=1).max())
        logps = token_logprobs(model, batch["input_ids"][:, :width], batch["attention_mask"][:, :width])
        segments = batch["segment_ids"][:, :width]
        return latro_loss(
            batch["advantages"],
            segment_sums(logps, segments, RATIONALE),
            segment_sums(logps, segments, ANSWER),
            self.args.sft_coef,
        )

    def _score(self, model, ids, mask, segments, which) -> dict[int, torch.Tensor]:
        device = self.accelerator.device
        was_training = model.training
        model.eval()
        scores = score_segments(
            model, ids.to(device), mask.to(device), segments.to(device), which, self.args.rollout_batch_size
        )
        model.train(was_training)
        return {s: v.float().cpu() for s, v in scores.items()}

    def _log_rollout(self, out: dict, stops: torch.Tensor, z: list[list[int]], prompts: dict, k: int) -> None:
        lengths = torch.tensor([len(r) for r in z], dtype=torch.float)
        for name, value in (
            ("reward", out["R"]),
            ("kl", out["kl"]),
            ("r", out["r"]),
            ("advantage_mean", out["A"].mean()),
            ("advantage_std", out["A"].std()),
            ("rationale_length", lengths),
            ("stop_fraction", (stops >= 0).float()),
        ):
            self._metrics[name].append(float(value.float().mean()))
        tokenizer = self.processing_class
        rationales = tokenizer.batch_decode(z[: self.args.num_logged_samples], skip_special_tokens=True)
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


def _repeat(rows: list, k: int) -> list:
    return [row for row in rows for _ in range(k)]
