"""MarkovianTrainer: Markovian Transformers (Viteri et al., arXiv 2404.18988).

The CoT must carry everything needed for the answer: the answer is scored from the CoT
with the question redacted. One update (N questions x K samples, rows prompt-major):

    1. rollout    CoT_1..CoT_K ~ pi(. | x), exactly cot_length tokens each (cot_end_of_turn: the model's
                  end-of-turn ids are never sampled; "stop": a CoT ends at the first one);
                  CoT' = the critic's greedy CoT, once per question (the baseline)
    2. reward     R = mean_y log P_scorer(y | x~, CoT) - mean_y log P_critic(y | x~, CoT')
                  x~ = x with the question replaced by "<Redacted>" (kept when markovian=False)
    3. advantage  A = (R - mean_group) / (std_group + 1e-8) for K >= 2;
                  A = R - b, b <- decay * b + (1 - decay) * mean R for K = 1
    4. loss       POLICY_LOSSES[method]:
                  pg:  -mean_t log pi(CoT_t) * A
                  ppo: -mean_t min(rho_t A, clip(rho_t, 1 - eps, 1 + eps) A), rho = pi / pi_rollout
                  ei:  -mean_{kept} mean_t log pi(CoT_t), kept: R > mean + ei_std * std (history)
                  + kl_penalty * KL(pi || critic) - entropy_bonus * H   (CoT positions, full vocab)
                  - actor_reward_weight * R_actor    (scorer="actor": R through the actor, with grad)

The critic is the frozen reference model (`reference_model()`). Scoring rows are built from
token ids (`MarkovianPrompts`), so no per-model token ids are hard-coded. The vector-
quantised variant (`use_vq`) is `MarkovianVQTrainer` in `vq_trainer.py`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ...data.registry import CHECKER_NONE, load_markovian_examples
from ...evaluation.accuracy import cut_off_rows, majority_fields, shard_indices
from ...evaluation.checkers import checker_for, extract_answer, is_correct
from ...generation.sampling import generate, sampling_config
from ...objectives.advantages import repeat_rows
from ...objectives.markovian import (
    ANSWER,
    COT,
    EMABaseline,
    MarkovianPrompts,
    RewardHistory,
    ei_keep_mask,
    ei_weights,
    masked_entropy,
    masked_kl,
    policy_gradient_loss,
    ppo_clipped_loss,
    zscore_advantages,
)
from ...runtime.models import end_of_text_ids, eval_mode
from ...scoring.head_terms import window_head_terms
from ...scoring.logprobs import masked_mean, token_logprobs
from ...scoring.packing import ROW_KEYS
from ...scoring.window import forward_window, score_rows, window_logprobs
from ..core.base_config import EVAL_ANSWER_TOKENS
from ..core.docstrings import documented
from ..core.rollout_trainer import RolloutTrainer
from .config import MarkovianConfig


# ---------------------------------------------------------------- step 4: the policy losses
def _pg_loss(logps, cot_mask, batch, args) -> dict:
    return {"policy_loss": policy_gradient_loss(logps, batch["advantages"], cot_mask)}


def _ei_loss(logps, cot_mask, batch, args) -> dict:
    return {"policy_loss": policy_gradient_loss(logps, batch["weights"], cot_mask)}


def _ppo_loss(logps, cot_mask, batch, args) -> dict:
    """Clipped surrogate against the rollout policy. On pass 0 the weights are still the rollout's,
    so the current log-probs (detached) ARE the old ones: they are written into the rollout
    (`old_logps`, shared by every pass over it) instead of costing an extra forward."""
    columns = cot_mask.any(dim=0)  # every row's CoT sits in the same columns, from the same first column
    cot_logps, cot_only = logps[:, columns], cot_mask[:, columns]
    width = batch["old_logps"].shape[1]  # cot_length: CoTs ended early ("stop") leave the rest masked
    cot_logps = torch.nn.functional.pad(cot_logps, (0, width - cot_logps.shape[1]))
    cot_only = torch.nn.functional.pad(cot_only, (0, width - cot_only.shape[1]))
    if batch["rollout_pass"] == 0:
        batch["old_logps"].copy_(cot_logps.detach())
    out = ppo_clipped_loss(cot_logps, batch["old_logps"], batch["advantages"], cot_only, args.ppo_epsilon)
    return {"policy_loss": out["loss"], "ratio": out["ratio"], "clip_fraction": out["clip_fraction"]}


POLICY_LOSSES = {"pg": _pg_loss, "ppo": _ppo_loss, "ei": _ei_loss}


@documented
class MarkovianTrainer(RolloutTrainer):
    """Markovian training on any causal LM. Datasets need string columns `question`, `answer`."""

    trainer_name = "markovian"
    config_class = MarkovianConfig
    required_columns = ("question", "answer")
    eval_uses_reference = True  # the critic answers from the CoT
    args: MarkovianConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._check_variant()
        config = self.args
        self.prompts = MarkovianPrompts(
            self.processing_class, config.instruction, config.markovian, config.use_chat_template,
            config.max_prompt_length, config.reasoning_prefix, config.answer_marker,
        )
        self.ema_baseline = EMABaseline(config.baseline_decay)
        self.reward_history = RewardHistory()
        self.register_state("ema_baseline", self.ema_baseline)
        self.register_state("ei_history", self.reward_history)
        self._baseline_cache: dict[tuple[str, str], tuple[list[int], float]] = {}
        self._cache_baselines = not _zero3(self)
        self.end_ids = end_of_text_ids(self.processing_class, self.model)  # a chat model's end-of-turn ids too

    def _check_variant(self) -> None:
        if self.args.use_vq:
            raise ValueError("use_vq=True: use MarkovianVQTrainer (`--trainer markovian` picks it from the config)")

    @classmethod
    def load_split(cls, config: MarkovianConfig, split: str, tokenizer):
        """`question` / `answer` rows; wiki tasks are sliced into question_length / target_length tokens."""
        return load_markovian_examples(config.dataset_name, split, tokenizer, **config.dataset_kwargs)

    @classmethod
    def sft_rows(cls, config: MarkovianConfig, rows, tokenizer):
        """Warm-start text in the scoring format: x~, " {CoT}", " Answer: {y}" (every other row redacted),
        so that the critic (a copy of the warm start) learns to read the answer off the CoT alone."""
        prompts = MarkovianPrompts(tokenizer, config.instruction, True, config.use_chat_template,
                                   reasoning_prefix=config.reasoning_prefix, answer_marker=config.answer_marker)

        def convert(row, index):
            return {
                "queries": prompts.text(row["question"], redact=index % 2 == 1),
                "rationale": f" {row['rationale']}",
                "responses": f"{config.answer_marker} {row['target']}",
            }

        return rows.map(convert, with_indices=True, desc="Markovian warm-start format")

    @property
    def updates_per_rollout(self) -> int:
        return self.args.ppo_epochs if self.args.method == "ppo" else 1

    # ================================================================== rollout
    def make_rollout(self, prompts: dict[str, list]) -> dict:
        args, k = self.args, self.args.rloo_k
        questions, answers = list(prompts["question"]), list(prompts["answer"])
        x = [self.prompts.actor_ids(q) for q in questions]

        # 1. rollout: CoT_1..K ~ pi(. | x), exactly cot_length tokens; CoT' = greedy critic CoT per question
        stop_ids, min_new_tokens = self._cot_stops()
        cots = self._end_cots(self.sample(x, k, args.cot_length, stop_ids, min_new_tokens=min_new_tokens).tolist())
        base_cots, base_scores = self._critic_baseline(questions, answers, x)

        # 2. reward: R = mean_y log P_scorer(y | x~, CoT) - mean_y log P_critic(y | x~, CoT')
        score_rows_ = self.prompts.scoring_rows([self.scoring_prefix(q) for q in repeat_rows(questions, k)], cots,
                                                repeat_rows(answers, k))
        with self._scorer() as scorer:
            scores = self._answer_logprob(scorer, score_rows_)
        rewards = scores - base_scores.repeat_interleave(k)

        # 3. advantage: within-group z-score (K >= 2) or EMA baseline (K = 1); EI keep-weights
        advantages, weights = self._advantages(rewards)
        self._log_rollout(questions, answers, cots, base_cots, scores, base_scores, rewards, advantages)
        # the actor's rows: [x; CoT], or when non-Markovian the scoring rows [x; CoT; A; y] (same prefix: one forward)
        rows = self.prompts.actor_rows(repeat_rows(x, k), cots) if args.markovian else score_rows_
        batch = {**{key: rows[key] for key in ROW_KEYS}, "advantages": advantages, "weights": weights}
        if args.markovian and args.actor_reward_weight > 0:
            batch.update({f"score_{key}": score_rows_[key] for key in ROW_KEYS})
        if args.method == "ppo":  # filled on pass 0 (see _ppo_loss)
            batch["old_logps"] = torch.full((len(cots), args.cot_length), float("nan"))
        device = self.accelerator.device
        return {key: value.to(device) for key, value in batch.items()}

    def refresh_reference(self) -> None:
        """The critic becomes a copy of the policy: the cached CoT' / baseline scores were the old critic's."""
        super().refresh_reference()
        self._baseline_cache.clear()

    def _critic_baseline(self, questions, answers, prompts) -> tuple[list[list[int]], torch.Tensor]:
        """CoT' (greedy, frozen critic) and log P_critic(y | x~, CoT') per question, cached: both are constant."""
        keys = list(zip(questions, answers))
        missing = [i for i, key in enumerate(keys) if key not in self._baseline_cache]
        if missing:
            with self.reference_model() as critic:
                cots = self._generate_cots(critic, [prompts[i] for i in missing], greedy=True)
                rows = self.prompts.scoring_rows(
                    [self.scoring_prefix(questions[i]) for i in missing], cots, [answers[i] for i in missing]
                )
                scores = self._answer_logprob(critic, rows)
            fresh = {keys[i]: (cot, float(s)) for i, cot, s in zip(missing, cots, scores)}
            if not self._cache_baselines:
                return [fresh[key][0] for key in keys], torch.tensor([fresh[key][1] for key in keys])
            self._baseline_cache.update(fresh)
        cached = [self._baseline_cache[key] for key in keys]
        return [c[0] for c in cached], torch.tensor([c[1] for c in cached])

    def _generate_cots(self, model, prompts: list[list[int]], greedy: bool, sampling: dict | None = None):
        """cot_length new tokens per prompt, under `cot_end_of_turn` as the rollout's. Sampled at `sampling`
        (default: the rollout's temperature / top-p / top-k)."""
        args = self.args
        sampling = sampling or dict(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k)
        stop_ids, min_new_tokens = self._cot_stops()
        config = sampling_config(args.cot_length, self.processing_class.pad_token_id, stop_ids, greedy=greedy,
                                 min_new_tokens=min_new_tokens, **sampling)
        return self._end_cots(generate(model, prompts, config, args.rollout_batch_size).tolist())

    def _cot_stops(self) -> tuple[list[int], int | None]:
        """(end ids, min_new_tokens) of CoT generation. suppress: the end ids are masked for all cot_length tokens
        (transformers' min_new_tokens, as the paper's code generated: exactly cot_length tokens of the model's own
        turn); stop: they end the CoT after at least one token; ignore: ordinary tokens (nothing stops or masks)."""
        mode = self.args.cot_end_of_turn
        if mode == "ignore":
            return [], None
        return self.end_ids, self.args.cot_length if mode == "suppress" else 1

    def _end_cots(self, rows: list[list[int]]) -> list[list[int]]:
        """stop: each generated row up to (not including) its first end id; otherwise the rows as they are."""
        if self.args.cot_end_of_turn != "stop":
            return rows
        ends = set(self.end_ids)
        return [row[: next((i for i, t in enumerate(row) if t in ends), len(row))] for row in rows]

    def _answer_logprob(self, model, rows: dict) -> torch.Tensor:
        """Mean log-prob of the answer tokens per row (float32, no grad, eval mode)."""
        with eval_mode(model):
            return score_rows(model, rows, (ANSWER,), self.args.rollout_batch_size, reduce="mean",
                              shared_prefill=self.share_prefill)[ANSWER]

    def _advantages(self, rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(advantages, EI weights) from R; the EMA baseline / EI history / EI counts see every process."""
        args = self.args
        everywhere = self.accelerator.gather(rewards.to(self.accelerator.device)).cpu()
        if not self.check_rewards(everywhere):  # never fold NaN/inf into state; the guard skips this update
            nan = torch.full_like(rewards, float("nan"))
            return nan, nan
        if args.rloo_k >= 2:
            advantages = zscore_advantages(rewards, args.rloo_k)
        else:
            advantages = self.ema_baseline.advantages(rewards, batch_mean=everywhere.mean())
            self.log_metric("ema_baseline", self.ema_baseline.value)
        weights = torch.ones_like(rewards)
        if args.method == "ei":
            self.reward_history.update(everywhere)
            kept, threshold = ei_keep_mask(rewards, self.reward_history, args.ei_std, args.ei_warmup)
            kept_everywhere, _ = ei_keep_mask(everywhere, self.reward_history, args.ei_std, args.ei_warmup)
            weights = ei_weights(kept, total=everywhere.numel(), total_kept=int(kept_everywhere.sum()))
            self.log_metric("ei_kept_fraction", kept_everywhere.float().mean())
            if threshold != float("inf"):
                self.log_metric("ei_threshold", threshold)
        return advantages, weights

    # ===================================================================== loss
    def compute_objective(self, model, batch: dict) -> dict[str, torch.Tensor]:
        args = self.args
        # 4. one forward with grad over the actor's rows: log pi(CoT) (and R_actor when non-Markovian)
        segments = batch["segment_ids"]
        scored = (segments == COT) | (segments == ANSWER)
        logps, window, kl, entropy = self._policy_terms(model, batch, scored)
        cot_mask = window["segment_ids"] == COT
        parts = POLICY_LOSSES[args.method](logps, cot_mask, batch, args)
        loss = parts["policy_loss"]
        parts["entropy"] = entropy(cot_mask)
        if args.kl_penalty > 0:  # + kl_penalty * KL(pi || critic), full vocabulary, aligned, masked
            parts["kl"] = kl(cot_mask)
            loss = loss + args.kl_penalty * parts["kl"]
        if args.entropy_bonus > 0:  # - entropy_bonus * H, differentiable
            loss = loss - args.entropy_bonus * parts["entropy"]
        if args.actor_reward_weight > 0:  # - w * R_actor, differentiable
            parts["actor_reward"] = self._actor_reward(model, batch, logps, window).mean()
            loss = loss - args.actor_reward_weight * parts["actor_reward"]
        return {"loss": loss, **{k: v.detach() for k, v in parts.items()}}

    def _policy_terms(self, model, batch: dict, scored: torch.Tensor):
        """(log-probs, window, KL(cot_mask), H(cot_mask)): the row-mean KL to the critic and entropy over the
        CoT, batch-averaged, as callables of the CoT mask. From the chunked LM head when it is exact (no
        (B, W, V) logits, also with grad), else from the window's logits. The entropy enters the loss only
        when entropy_bonus > 0 (the full-logits path then builds its graph), the KL only when kl_penalty > 0."""
        args = self.args
        if args.kl_penalty > 0 or args.entropy_bonus > 0:  # full-vocabulary terms with grad
            reference = self.reference_model if args.kl_penalty > 0 else None
            terms = window_head_terms(model, reference, batch, scored, shared_prefill=self.share_prefill_with_grad,
                                      reference_shared_prefill=self.share_prefill)
            if terms is not None:
                logps, entropy, kl, window = terms
                return (logps, window, lambda m: masked_mean(kl[:, 1:], m[:, 1:], dim=1).mean(),
                        lambda m: masked_mean(entropy[:, 1:], m[:, 1:], dim=1).mean())
            logits, window = forward_window(model, batch, scored)
            entropy = masked_entropy if args.entropy_bonus > 0 else _entropy_metric  # logged only: no graph
            return (token_logprobs(logits, window["input_ids"]), window,
                    lambda m: masked_kl(logits, self._critic_logits(batch), m).mean(),
                    lambda m: entropy(logits, m).mean())
        # log-probs and the logged entropy (no graph) from the chunked head, or the logits one row at a time
        logps, window = window_logprobs(model, batch, scored, entropy=True, shared_prefill=self.share_prefill_with_grad)
        return logps, window, None, lambda m: masked_mean(window["token_entropy"][:, 1:], m[:, 1:], dim=1).mean()

    @torch.no_grad()
    def _critic_logits(self, batch: dict) -> torch.Tensor:
        segments = batch["segment_ids"]
        with self.reference_model() as critic:
            logits, _ = forward_window(critic, batch, (segments == COT) | (segments == ANSWER))
        return logits

    def _actor_reward(self, model, batch: dict, logps: torch.Tensor, window: dict) -> torch.Tensor:
        """R_actor = mean_y log P_actor(y | x~, CoT) with grad (from the policy forward when non-Markovian)."""
        if not self.args.markovian:
            return masked_mean(logps, window["segment_ids"] == ANSWER, dim=1)
        rows = {key[len("score_"):]: value for key, value in batch.items() if key.startswith("score_")}
        score_logps, score_window = window_logprobs(model, rows, rows["segment_ids"] == ANSWER)
        return masked_mean(score_logps, score_window["segment_ids"] == ANSWER, dim=1)

    # =============================================================== evaluation
    def evaluation_records(self, model, dataset) -> list[dict]:
        """The actor's CoT (greedy, or sampled at eval_temperature), then the scorer's greedy answer from
        x~ + CoT; with eval_num_samples = k > 1, also k sampled CoTs per question and their majority answer."""
        args = self.args
        limit = len(dataset) if args.max_eval_samples is None else min(args.max_eval_samples, len(dataset))
        # padded to the same length on every rank (ZeRO-3: same generate / forward calls everywhere);
        # empty only when the eval set is, i.e. on every rank at once
        indices, num_real = shard_indices(limit, self.accelerator.process_index, self.accelerator.num_processes)
        if not indices:
            return []
        rows = dataset.select(indices)
        questions, answers = list(rows["question"]), list(rows["answer"])
        k = args.eval_num_samples if checker_for(self.eval_checker_name()) != CHECKER_NONE else 1
        # the actor's CoTs come first: with LoRA the critic is the same module with its adapter disabled
        cots = self.eval_cots(model, questions, sample=args.eval_temperature > 0)
        sampled = self.eval_cots(model, repeat_rows(questions, k), sample=True) if k > 1 else []
        prefixes = [self.scoring_prefix(q) for q in questions]
        budget = self._answer_budget(dataset.select(range(limit))["answer"])  # the whole evaluation's: every rank alike
        with self._scorer(model) as scorer:
            completions, cut = self._eval_answers(scorer, prefixes, cots, budget)
            logps = self._answer_logprob(scorer, self.prompts.scoring_rows(prefixes, cots, answers))
            votes, votes_cut = (self._eval_answers(scorer, repeat_rows(prefixes, k), sampled, budget) if k > 1
                                else ([], []))
        decode = self.processing_class.batch_decode
        records = [self._eval_record(*row) for row in zip(indices, questions, answers, decode(cots), completions, cut,
                                                           logps.tolist())]
        for i, record in enumerate(records if k > 1 else []):
            samples = [f"{args.answer_marker.strip()}{text}" for text in votes[i * k : (i + 1) * k]]
            record.update(majority_fields(self.eval_checker_name(), samples, record["groundtruth"],
                                          votes_cut[i * k : (i + 1) * k], args.eval_cut_off_fallback))
        return records[:num_real]  # drop the padding rows

    def eval_cots(self, model, questions: list[str], sample: bool = False) -> list[list[int]]:
        """The actor's CoTs for evaluation: greedy, or sampled with the run's `eval_sampling()`."""
        prompts = [self.prompts.actor_ids(q) for q in questions]
        return self._generate_cots(model, prompts, greedy=not sample, sampling=self.args.eval_sampling())

    def _answer_budget(self, answers) -> int:
        """The scorer's new-token budget: the one rule's EVAL_ANSWER_TOKENS (or the longest gold answer of the
        evaluation, e.g. wiki tasks), unless eval_max_new_tokens."""
        longest = max((len(self.prompts.answer_ids(a)) for a in answers), default=0)
        return self.args.eval_max_new_tokens or max(EVAL_ANSWER_TOKENS, longest)

    def _eval_answers(self, scorer, prefixes, cots, budget: int) -> tuple[list[str], list[bool]]:
        """The scorer's greedy answers (at most ``budget`` tokens) after x~ + CoT + answer_marker, and whether each ran
        out of tokens."""
        prompts = [prefix + cot + self.prompts.marker_ids for prefix, cot in zip(prefixes, cots)]
        tokenizer = self.processing_class
        end_ids = end_of_text_ids(tokenizer, scorer)
        config = sampling_config(budget, tokenizer.pad_token_id, end_ids, greedy=True)
        ids = generate(scorer, prompts, config, self.args.per_device_eval_batch_size)
        return tokenizer.batch_decode(ids, skip_special_tokens=True), cut_off_rows(ids, end_ids)

    def _eval_record(self, index, question, answer, cot_text, completion, cut_off, answer_logprob) -> dict:
        name = self.eval_checker_name()
        marker = self.args.answer_marker.strip()
        completion = f"{marker}{completion}"
        if checker_for(name) == CHECKER_NONE:  # wiki tasks: exact continuation / reconstruction
            prediction = completion[len(marker) :].strip()
            correct = prediction.startswith(answer.strip()) and bool(answer.strip())
        else:  # the completion starts with the answer marker: a cut-off one is still read after it
            strict = cut_off and not self.args.eval_cut_off_fallback
            prediction, correct = extract_answer(name, completion, strict), is_correct(name, completion, answer, strict)
        return {
            "index": index, "query": question, "groundtruth": answer, "rationale": cot_text,
            "completion": completion, "cut_off": cut_off, "prediction": prediction, "correct": correct,
            "answer_logprob": answer_logprob,
        }

    # ================================================================== helpers
    def scoring_prefix(self, question: str) -> list[int]:
        """Token ids of x~, the scoring context before the CoT."""
        return self.prompts.scoring_ids(question)

    @contextmanager
    def _scorer(self, actor=None):
        """The model that scores log P(answer | CoT): the frozen critic, or the actor (`scorer="actor"`)."""
        if self.args.scorer == "actor":
            yield actor if actor is not None else self.model
            return
        with self.reference_model() as critic:
            yield critic

    def _log_rollout(self, questions, answers, cots, base_cots, scores, base_scores, rewards, advantages):
        if torch.isfinite(rewards).all():
            for name, value in (("reward", rewards), ("scorer_logprob", scores), ("baseline_logprob", base_scores),
                                ("advantage_mean", advantages)):
                self.log_metric(name, value)
            self.log_metric_std("advantage_std", advantages)
        k, n = self.args.rloo_k, self.args.num_logged_samples
        decode = self.processing_class.batch_decode
        texts, base_texts = decode(cots[:n], skip_special_tokens=True), decode(base_cots, skip_special_tokens=True)
        self.record_samples(
            [
                {
                    "prompt": questions[i // k], "rationale": text, "answer": answers[i // k],
                    "reward": float(rewards[i]), "advantage": float(advantages[i]),
                    "baseline_rationale": base_texts[i // k],
                }
                for i, text in enumerate(texts)
            ]
        )


@torch.no_grad()
def _entropy_metric(logits: torch.Tensor, cot_mask: torch.Tensor) -> torch.Tensor:
    """masked_entropy(logits, cot_mask).mean() for logging, row by row (no graph, small temporaries)."""
    rows = [masked_entropy(row, mask) for row, mask in zip(logits.detach().split(1), cot_mask.split(1))]
    return torch.cat(rows).mean()


def _zero3(trainer) -> bool:
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return bool(trainer.is_deepspeed_enabled and plugin is not None and plugin.zero_stage == 3)

