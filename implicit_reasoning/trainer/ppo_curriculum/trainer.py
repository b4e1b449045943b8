"""PPOCurriculumTrainer: PPO with a value network and KL control, on a curriculum-weighted data mixture.

PPO (Schulman et al. 2017) as used for language models (Ziegler et al. 2019; Ouyang et al.
2022): each completion token is an action, the value network V estimates the return from the
state before it. One rollout (B = per_device_train_batch_size x G x num_mini_batches prompts
per process, drawn by the curriculum's weights when `datasets` lists a mixture):

    1. rollout    y ~ pi_old(. | x): response_length tokens, cut after the first end-of-text token
    2. reward     s = sum_f w_f f(x, y)                            (TRL-style reward functions)
                  r_t = -beta (log pi_old(y_t) - log pi_ref(y_t)),  + s at the last token
    3. advantage  delta_t = r_t + gamma V_{t+1} - V_t,  A_t = delta_t + gamma lam A_{t+1}   (GAE over tokens)
                  R_t = A_t + V_t;  A whitened over the rollout on all processes
    4. loss       for ppo_epochs passes, one optimizer update per minibatch:
                  max(-A rho, -A clip(rho, 1 - eps, 1 + eps)) + vf_coef 0.5 max((V - R)^2, (V_clip - R)^2)
                  (rho = pi / pi_old per token; sums over the minibatch's tokens / its token count)
                  a pass stops early when an update's approx KL(pi_old || pi) > 1.5 early_stop_kl
    5. KL control beta <- beta (1 + clip(KL / kl_target - 1, +-0.2) n / kl_horizon)   (adaptive_kl)

Steps 1-3 and 5 are `make_rollout`, step 4 `rollout_schedule` + `compute_objective`. The math
is in `objectives/ppo.py`, `objectives/advantages.gae` and `objectives/rewards.py`; the value network and the
module Trainer trains (policy + value) in `value_model.py`.
"""

from __future__ import annotations

import math

import torch

from ...objectives import ppo
from ...objectives import rewards
from ...objectives.advantages import find_stop_positions, gae
from ...runtime.models import encode_prompt, end_of_text_ids
from ...scoring.packing import pack_rows
from ..core.curriculum import load_mixture
from ..core.docstrings import documented
from ..core.rollout_trainer import RolloutTrainer, split_rows
from .config import PPOCurriculumConfig
from .data import PPO_COLUMNS, load_entry_rows
from .support import PPOSupport

PROMPT, RESPONSE = 1, 2  # segment ids of a packed [x; y] row, aligned on y
ROW_KEYS = ("input_ids", "attention_mask", "position_ids", "segment_ids")
TOKEN_KEYS = ("old_logps", "old_values", "advantages", "returns", "mask")


@documented
class PPOCurriculumTrainer(PPOSupport, RolloutTrainer):
    """PPO on any causal LM; datasets need `prompt`, `continuation`, `groundtruth` (see `data.py`)."""

    trainer_name = "ppo_curriculum"
    config_class = PPOCurriculumConfig
    required_columns = PPO_COLUMNS
    args: PPOCurriculumConfig

    def __init__(self, *args, reward_funcs=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop_ids = end_of_text_ids(self.processing_class, self.unwrapped_policy())
        self.reward_funcs, self.reward_names = self.build_rewards(reward_funcs)
        self.kl_ctl = ppo.KLController(self.args.kl_coef, self.args.adaptive_kl, self.args.kl_target,
                                       self.args.kl_horizon)
        self.register_state("kl_controller", self.kl_ctl)
        self._update_approxkl: list[float] = []
        self._discard_rollout = False

    @classmethod
    def load_split(cls, config: PPOCurriculumConfig, split: str, tokenizer):
        return load_mixture(config, split, lambda entry: load_entry_rows(entry, split, tokenizer, config))

    def difficulty_texts(self, rows: dict[str, list]) -> tuple[list[str], list[str]]:
        return rows["prompt"], rows["continuation"]

    @property
    def updates_per_rollout(self) -> int:
        return self.args.ppo_epochs * self.args.num_mini_batches

    # ============================================================ 1-3, 5: the rollout
    def make_rollout(self, prompts: dict[str, list]) -> dict:
        args, tokenizer = self.args, self.processing_class
        self._update_approxkl, self._discard_rollout = [], False
        prompts = self.with_sources(prompts)  # `source` is optional: the run's dataset_name then
        x = [encode_prompt(tokenizer, p, args.max_prompt_length) for p in prompts["prompt"]]

        # 1. rollout: one completion per prompt, cut after the first end-of-text token (kept: stopping is an action)
        #    generation's own logits at the sampling temperature are the old log-probs (no policy pass)
        scored = self.sample_scored(x, 1, args.response_length, self.stop_ids, logprob_temperature=args.temperature) \
            if args.score_from_generation else None
        generated = scored.tokens if scored is not None else self.sample(x, 1, args.response_length, self.stop_ids)
        stops = find_stop_positions(generated, self.stop_ids, ())
        y = [row[: s + 1].tolist() if s >= 0 else row.tolist() for row, s in zip(generated, stops.tolist())]
        rows = pack_rows([x, y], tokenizer.pad_token_id, align=RESPONSE - 1)
        old_logps, old_values, ref_logps, mask = self.score_rollout(rows, scored)

        # 2. reward: s = sum_f w_f f(x, y); r_t = -beta kl_t, + s at the last token
        completions = tokenizer.batch_decode([ids[:-1] if s >= 0 else ids for ids, s in zip(y, stops.tolist())],
                                             skip_special_tokens=True)
        scores = self.score_completions({**prompts, "cut_off": (stops < 0).tolist()}, completions, y)
        beta = self.kl_ctl.value
        token_rewards, kl = ppo.shaped_rewards(scores, old_logps, ref_logps, mask, beta)

        # 3. advantage: GAE over tokens; returns are the value targets; whiten A over all processes
        advantages, returns = gae(token_rewards, old_values, mask, args.gamma, args.lam)
        if args.whiten_advantages:
            moments = self.sum_over_processes(ppo.masked_moments(advantages, mask))
            advantages = ppo.whiten(advantages, mask, moments)

        # 5. KL control: beta follows the rollout's mean sequence KL (all processes); a discarded rollout moves nothing
        local = [float(kl.sum(1).double().sum()), float(len(y)), float(self._discard_rollout)]
        kl_sum, n, discard = self.sum_over_processes(torch.tensor(local, dtype=torch.float64)).tolist()
        self._discard_rollout = discard > 0  # the same on every process: end_rollout_early decides globally
        if not self._discard_rollout:
            self.kl_ctl.update(kl_sum / n, int(n))
        self._log_rollout(prompts, completions, y, stops, scores, kl, beta, old_values, returns, mask)
        device = self.accelerator.device
        tokens = dict(old_logps=old_logps, old_values=old_values, advantages=advantages, returns=returns,
                      mask=mask.float())
        return {**{k: rows[k].to(device) for k in ROW_KEYS}, **{k: v.to(device) for k, v in tokens.items()}}

    def score_completions(self, prompts: dict[str, list], completions: list[str], y: list[list[int]]) -> torch.Tensor:
        """The weighted sum of the reward functions (each one's mean logged); a NaN / inf flags the update."""
        columns = {k: v for k, v in self.with_sources(prompts).items() if k != "prompt"}
        values, applicable = rewards.call_rewards(self.reward_funcs, self.reward_names, prompts["prompt"],
                                                  completions, y, columns)
        bad = rewards.nonfinite_reward_names(values, applicable, self.reward_names)
        if bad:
            self.flag_nonfinite(f"non-finite reward from reward function(s) {bad}")
            self._discard_rollout = True  # the rollout's first update is skipped; then roll out afresh
        # each function's mean over the rows it applies to on every process (sums and counts, not per-process means)
        sums = self.sum_over_processes(torch.stack([torch.where(applicable, values, 0.0).sum(1),
                                                    applicable.sum(1).double()], dim=1))
        for name, (total, count) in zip(self.reward_names, sums.tolist()):
            if count > 0 and math.isfinite(total):
                self.log_metric(f"rewards/{name}/mean", total / count)
        return rewards.combine_rewards(values, applicable, self.reward_weights)

    # ============================================================ 4: the updates
    def rollout_schedule(self, rollout: dict) -> list[dict]:
        """ppo_epochs passes; each a fresh shuffle into num_mini_batches minibatches of G micro-batches.

        Every micro-batch carries its minibatch's token count / G, so that the losses of the G
        micro-batches (each divided by G by Trainer) add up to the minibatch's token mean.
        """
        args = self.args
        rows, accumulation = len(rollout["input_ids"]), args.gradient_accumulation_steps
        size = rows // args.num_mini_batches
        generator = torch.Generator().manual_seed(args.seed + self.state.global_step)
        minibatches = []
        for _ in range(args.ppo_epochs):
            order = torch.randperm(rows, generator=generator).to(rollout["input_ids"].device)
            minibatches += [{k: v[order[m * size : (m + 1) * size]] for k, v in rollout.items()}
                            for m in range(args.num_mini_batches)]
        # DDP averages the processes' gradients: dividing by (all processes' tokens) / processes makes the
        # update the token mean of the whole minibatch, however its tokens fall on processes and micro-batches
        tokens = self.sum_over_processes(torch.stack([mb["mask"].sum().double().cpu() for mb in minibatches]))
        scale = self.accelerator.num_processes * accumulation
        schedule = []
        for minibatch, count in zip(minibatches, tokens.tolist()):
            minibatch["token_normalizer"] = torch.full((size,), max(count, 1.0) / scale, device=minibatch["mask"].device)
            schedule.extend(split_rows(minibatch, accumulation))
        return schedule

    def compute_objective(self, model, batch: dict) -> dict[str, torch.Tensor]:
        # 4. loss = sum_t [max(-A rho, -A clip(rho)) + vf_coef 0.5 max((V-R)^2, (V_clip-R)^2)] / tokens
        rows = {k: batch[k] for k in ROW_KEYS}
        # log-probs under softmax(logits / temperature), the distribution that sampled (as in TRL's PPO)
        logps, window, values = model(rows, batch["segment_ids"] == RESPONSE, self.args.temperature)
        entropy = window["token_entropy"][:, 1:]  # of the distribution each response token came from, no grad
        logps, values = logps[:, 1:], values[:, 1:]  # response columns
        width = logps.shape[1]
        old_logps, old_values, advantages, returns, mask = (batch[k][:, :width] for k in TOKEN_KEYS)
        normalizer = batch["token_normalizer"][0]
        pg = ppo.policy_loss_terms(logps, old_logps, advantages, self.args.cliprange)
        vf = ppo.value_loss_terms(values, old_values, returns, self.args.cliprange_value)
        loss = ppo.masked_total(pg["loss"], mask, normalizer) + self.args.vf_coef * ppo.masked_total(
            vf["loss"], mask, normalizer)
        self._update_approxkl.append([float(ppo.masked_total(pg["approxkl"].detach(), mask, 1.0)), float(mask.sum())])
        self._log_update(pg, vf, entropy, mask, normalizer)
        return {"loss": loss}

    def end_rollout_early(self) -> bool:
        """After each update: discard a rollout with a non-finite reward; stop its passes when KL(pi_old||pi)
        of the update, over all processes, exceeds 1.5 x early_stop_kl."""
        if self.args.early_stop_kl is None and not self._discard_rollout:
            return False
        if self._discard_rollout:
            return True
        local = torch.tensor(self._update_approxkl, dtype=torch.float64).reshape(-1, 2).sum(0)
        total, count = self.sum_over_processes(local).tolist()  # the update's token mean, over all processes
        self._update_approxkl = []
        stop = total / max(count, 1.0) > 1.5 * self.args.early_stop_kl
        self.log_metric("policy/early_stopped", float(stop))
        return stop

    # ============================================================ logging
    def _log_update(self, pg: dict, vf: dict, entropy: torch.Tensor, mask: torch.Tensor, normalizer) -> None:
        """Token means of the update: each micro-batch's sums / (minibatch tokens / (processes x G)), averaged by
        log_metric over the G micro-batches and the processes, are the minibatch's exact token means."""
        for name, value in (
            ("policy/approxkl", pg["approxkl"].detach()),
            ("policy/clipfrac", pg["clipped"]),
            ("policy/entropy", entropy),
            ("loss/policy", pg["loss"].detach()),
            ("loss/value", vf["loss"].detach()),
            ("val/clipfrac", vf["clipped"]),
            ("val/ratio", pg["ratio"].detach()),
        ):
            self.log_metric(name, ppo.masked_total(value, mask, normalizer))

    def _log_rollout(self, prompts, completions, y, stops, scores, kl, beta, values, returns, mask) -> None:
        seq_kl = kl.sum(1)
        lengths = torch.tensor([len(ids) for ids in y], dtype=torch.float)
        # token statistics of the whole rollout: moments summed over processes (a mean of per-process variances is not)
        value_stats = ppo.value_statistics(self.sum_over_processes(ppo.value_moments(values, returns, mask)))
        for name, value in (
            ("objective/kl", seq_kl),
            ("objective/kl_coef", beta),
            ("objective/scores", scores),
            ("objective/non_score_reward", -beta * seq_kl),
            ("objective/rlhf_reward", scores - beta * seq_kl),
            ("completion_length", lengths),
            ("stop_fraction", (stops >= 0).float()),
            ("repetition_rate", torch.tensor([rewards.repetition_rate(ids) for ids in y])),
            *value_stats.items(),
        ):
            if torch.isfinite(torch.as_tensor(value, dtype=torch.float)).all():
                self.log_metric(name, value)
        n = self.args.num_logged_samples
        self.record_samples([
            {"prompt": prompts["prompt"][i], "completion": completions[i], "source": prompts["source"][i],
             "score": float(scores[i])}
            for i in range(min(n, len(completions)))
        ])
