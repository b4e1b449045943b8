"""MarkovianTrainer: Markovian Transformers (Viteri et al., arXiv 2404.18988).

The CoT must carry everything needed for the answer: the answer is scored from the CoT
with the question redacted. One update (N questions x K samples, rows prompt-major):

    1. rollout    CoT_1..CoT_K ~ pi(. | x), exactly cot_length tokens each;
                  CoT' = the critic's greedy CoT, once per question (the baseline)
    2. reward     R = mean_y log P_scorer(y | x~, CoT) - mean_y log P_critic(y | x~, CoT')
                  x~ = "{instruction} <Redacted>\\nReasoning:" (the question when markovian=False)
    3. advantage  A = (R - mean_group) / (std_group + 1e-8) for K >= 2;
                  A = R - b, b <- decay * b + (1 - decay) * mean R for K = 1
    4. loss       pg:  -mean_t log pi(CoT_t) * A
                  ppo: -mean_t min(rho_t A, clip(rho_t, 1 - eps, 1 + eps) A), rho = pi / pi_rollout
                  ei:  -mean_{kept} mean_t log pi(CoT_t), kept: R > mean + ei_std * std (history)
                  + kl_penalty * KL(pi || critic) - entropy_bonus * H   (CoT positions, full vocab)
                  - actor_reward_weight * R_actor    (scorer="actor": R through the actor, with grad)

The critic is the frozen reference model (BaseTrainer.reference_model). Scoring rows are
built from token ids: ids(x~) + CoT ids + ids(" Answer:") + ids(" " + answer), so no
per-model token ids are hard-coded. `use_vq` swaps steps 1-4 for backpropagation through
the frozen critic from vector-quantised actor hidden states (see `_vq_objective`).
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import torch

from ..utils.data_utils import CHECKER_NONE, load_markovian_examples
from ..utils.eval_utils import checker_for, extract_answer, is_correct
from ..utils.evaluation import shard_indices
from ..utils.generation import generate, sampling_config
from ..utils.markovian import (
    RewardHistory,
    ei_keep_mask,
    ei_weights,
    ema_advantages,
    masked_entropy,
    masked_kl,
    masked_mean,
    pack_fixed_cot,
    policy_gradient_loss,
    ppo_clipped_loss,
    window_token_logps,
    zscore_advantages,
)
from ..utils.model_utils import encode_continuation, encode_prompt
from ..utils.rollout import pack_segments
from ..utils.vq import quantize
from .base_trainer import BaseTrainer
from .trainer_config import MarkovianConfig

REDACTED = "<Redacted>"
ANSWER_MARKER = " Answer:"
DEFAULT_EVAL_ANSWER_TOKENS = 16
WINDOW_KEYS = ("input_ids", "attention_mask", "cot_mask", "answer_mask")


def actor_prompt(instruction: str, question: str) -> str:
    """The actor's prompt x: "{instruction} {question}\\nReasoning:"."""
    return f"{instruction} {question}\nReasoning:"


def scoring_prompt(instruction: str, question: str, markovian: bool = True) -> str:
    """The scorer's context before the CoT: the actor prompt with the question redacted (Markovian)."""
    return actor_prompt(instruction, REDACTED if markovian else question)


def _repeat(rows: list, k: int) -> list:
    return [row for row in rows for _ in range(k)]


def _rows(batch: dict, start: int, stop: int) -> dict:
    return {key: value[start:stop] for key, value in batch.items()}


class MarkovianTrainer(BaseTrainer):
    """Markovian training on any causal LM. Datasets need string columns `question`, `answer`."""

    required_columns = ("question", "answer")
    eval_uses_reference = True  # the critic answers from the CoT
    args: MarkovianConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        tokenizer = self.processing_class
        self.marker_ids = encode_continuation(tokenizer, ANSWER_MARKER)
        self.fresh_prefix_ids = tokenizer("", add_special_tokens=True).input_ids  # e.g. [bos]; VQ critic context
        self.ema_baseline: float | None = None
        self.reward_history = RewardHistory()
        self._old_logps: torch.Tensor | None = None
        self._vq_texts: tuple[list[str], list[str]] = ([], [])
        self._baseline_cache: dict[tuple[str, str], tuple[list[int], float]] = {}
        self._cache_baselines = not self._zero3()
        self._logits_to_keep = "logits_to_keep" in inspect.signature(self._base_model().forward).parameters
        if self.args.use_vq:
            self._check_vq_shapes()

    @classmethod
    def load_split(cls, config: MarkovianConfig, split: str, tokenizer):
        """`question` / `answer` rows; wiki tasks are sliced into question_length / target_length tokens."""
        return load_markovian_examples(
            config.dataset_name,
            split,
            tokenizer,
            question_length=config.question_length,
            target_length=config.target_length,
            **config.dataset_kwargs,
        )

    @classmethod
    def sft_rows(cls, config: MarkovianConfig, rows):
        """Warm-start text in the scoring format: "{instruction} {question}\nReasoning: {CoT} Answer: {y}".

        Every other row redacts the question, so that the critic (a copy of the warm start)
        learns to read the answer off the CoT alone.
        """

        def convert(row, index):
            return {
                "queries": scoring_prompt(config.instruction, row["question"], markovian=index % 2 == 1),
                "rationale": f" {row['rationale']}",
                "responses": f"{ANSWER_MARKER} {row['target']}",
            }

        return rows.map(convert, with_indices=True, desc="Markovian warm-start format")

    @property
    def updates_per_rollout(self) -> int:
        return self.args.ppo_epochs if self.args.method == "ppo" and not self.args.use_vq else 1

    # ================================================================== rollout
    def make_rollout(self, prompts: dict[str, list]) -> dict:
        if self.args.use_vq:
            return self._vq_rollout(prompts)
        args, k = self.args, self.args.rloo_k
        questions, answers = list(prompts["question"]), list(prompts["answer"])
        x = [self._encode(actor_prompt(args.instruction, q)) for q in questions]

        # 1. rollout: CoT_1..K ~ pi(. | x), exactly cot_length tokens; CoT' = greedy critic CoT per question
        with self.generation_model() as actor:
            cots = self._generate_cots(actor, _repeat(x, k), greedy=False)
        base_cots, base_scores = self._critic_baseline(questions, answers, x)

        # 2. reward: R = mean_y log P_scorer(y | x~, CoT) - mean_y log P_critic(y | x~, CoT')
        score_rows = self.scoring_rows(_repeat(questions, k), _repeat(answers, k), cots)
        with self._scorer() as scorer:
            scores = self._score(scorer, score_rows)
        rewards = scores - base_scores.repeat_interleave(k)

        # 3. advantage: within-group z-score (K >= 2) or EMA baseline (K = 1); EI keep-weights
        advantages, weights = self._advantages(rewards)
        self._log_rollout(questions, answers, cots, base_cots, scores, base_scores, rewards, advantages, weights)
        # the actor's rows: [x; CoT], or when non-Markovian the scoring rows [x; CoT; A; y] (same prefix: one forward)
        rows = self._actor_rows(_repeat(x, k), cots) if args.markovian else score_rows
        batch = {**rows, "advantages": advantages, "weights": weights, "rewards": rewards}
        if args.markovian and args.actor_reward_weight > 0:
            batch.update({f"score_{key}": value for key, value in score_rows.items()})
        batch["row_index"] = torch.arange(len(cots))
        if args.method == "ppo":  # filled on pass 0 (see _rollout_logps)
            self._old_logps = torch.zeros(len(cots), args.cot_length, device=self.accelerator.device)
        device = self.accelerator.device
        return {key: value.to(device) for key, value in batch.items()}

    def scoring_rows(self, questions: list[str], answers: list[str], cots: list[list[int]]) -> dict:
        """Packed [x~; CoT; " Answer:"; " " + answer] token rows (x~ redacts the question when markovian)."""
        prefixes = [self._scoring_prefix(q) for q in questions]
        answer_ids = [self._answer_ids(a) for a in answers]
        markers = [self.marker_ids] * len(cots)
        return pack_fixed_cot(prefixes, cots, markers, answer_ids, self.processing_class.pad_token_id)

    def _actor_rows(self, prompts: list[list[int]], cots: list[list[int]]) -> dict:
        empty = [[] for _ in cots]
        return pack_fixed_cot(prompts, cots, empty, empty, self.processing_class.pad_token_id)

    def _generate_cots(self, model, prompts: list[list[int]], greedy: bool) -> list[list[int]]:
        """Exactly cot_length new tokens per prompt (stop tokens are suppressed until then)."""
        length = self.args.cot_length
        config = sampling_config(
            self.args, self.processing_class.pad_token_id, self.stop_ids, greedy=greedy,
            max_new_tokens=length, min_new_tokens=length,
        )
        return generate(model, prompts, config, self.args.rollout_batch_size).tolist()

    def _critic_baseline(self, questions, answers, prompts) -> tuple[list[list[int]], torch.Tensor]:
        """CoT' (greedy, frozen critic) and log P_critic(y | x~, CoT') per question, cached: both are constant."""
        keys = list(zip(questions, answers))
        missing = [i for i, key in enumerate(keys) if key not in self._baseline_cache]
        if missing:
            with self.reference_model() as critic:
                cots = self._generate_cots(critic, [prompts[i] for i in missing], greedy=True)
                rows = self.scoring_rows([questions[i] for i in missing], [answers[i] for i in missing], cots)
                scores = self._score(critic, rows)
            fresh = {keys[i]: (cot, float(s)) for i, cot, s in zip(missing, cots, scores)}
            if not self._cache_baselines:
                return [fresh[key][0] for key in keys], torch.tensor([fresh[key][1] for key in keys])
            self._baseline_cache.update(fresh)
        cached = [self._baseline_cache[key] for key in keys]
        return [c[0] for c in cached], torch.tensor([c[1] for c in cached])

    @torch.no_grad()
    def _score(self, model, rows: dict) -> torch.Tensor:
        """Mean log-prob of the answer tokens per row: one forward per row, rollout_batch_size rows at a time."""
        was_training = model.training
        model.eval()
        device, size, out = self.accelerator.device, self.args.rollout_batch_size, []
        total = len(rows["input_ids"])
        for start in range(0, total, size):
            chunk = {key: value.to(device) for key, value in _rows(rows, start, start + size).items()}
            logits, window = self._window_forward(model, chunk, targets=("answer_mask",))
            logps = window_token_logps(logits, window["input_ids"])
            out.append(masked_mean(logps, window["answer_mask"], dim=1).float().cpu())
        model.train(was_training)
        return torch.cat(out)

    def _advantages(self, rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(advantages, EI weights) from R; the EMA baseline / EI history see the rewards of every process."""
        args = self.args
        everywhere = self.accelerator.gather(rewards.to(self.accelerator.device)).cpu()
        if not torch.isfinite(everywhere).all():  # never fold NaN/inf into state; the loss skips this update
            self._metrics["nonfinite_rewards"].append(1.0)
            nan = torch.full_like(rewards, float("nan"))
            return nan, nan
        if args.rloo_k >= 2:
            advantages = zscore_advantages(rewards, args.rloo_k)
        else:
            advantages, self.ema_baseline = ema_advantages(
                rewards, self.ema_baseline, args.baseline_decay, batch_mean=everywhere.mean()
            )
            self._metrics["ema_baseline"].append(self.ema_baseline)
        weights = torch.ones_like(rewards)
        if args.method == "ei":
            self.reward_history.update(everywhere)
            kept, threshold = ei_keep_mask(rewards, self.reward_history, args.ei_std, args.ei_warmup)
            weights = ei_weights(kept)
            self._metrics["ei_kept_fraction"].append(float(kept.float().mean()))
            if threshold != float("inf"):
                self._metrics["ei_threshold"].append(threshold)
        return advantages, weights

    # ===================================================================== loss
    def compute_objective(self, model, batch: dict) -> dict[str, torch.Tensor]:
        if self.args.use_vq:
            return self._vq_objective(model, batch)
        args = self.args
        # 4. one forward with grad over the actor's rows: log pi(CoT) (and R_actor when non-Markovian)
        logits, window = self._window_forward(model, batch)
        logps = window_token_logps(logits, window["input_ids"])
        cot_mask = window["cot_mask"]
        parts = self._policy_loss(logps, cot_mask, batch)
        loss = parts["policy_loss"]
        if args.kl_penalty > 0:  # + kl_penalty * KL(pi || critic), full vocabulary, aligned, masked
            parts["kl"] = self._critic_kl(logits, window, batch).mean()
            loss = loss + args.kl_penalty * parts["kl"]
        if args.entropy_bonus > 0:  # - entropy_bonus * H, differentiable
            parts["entropy"] = masked_entropy(logits, cot_mask).mean()
            loss = loss - args.entropy_bonus * parts["entropy"]
        else:  # logged only: one row at a time, so the float32 full-vocabulary temporaries stay one row big
            parts["entropy"] = self._entropy_metric(logits, cot_mask)
        if args.actor_reward_weight > 0:  # - w * R_actor, differentiable
            parts["actor_reward"] = self._actor_reward(model, batch, logps, window).mean()
            loss = loss - args.actor_reward_weight * parts["actor_reward"]
        return {"loss": loss, **{k: v.detach() for k, v in parts.items()}}

    @staticmethod
    @torch.no_grad()
    def _entropy_metric(logits: torch.Tensor, cot_mask: torch.Tensor) -> torch.Tensor:
        """masked_entropy(logits, cot_mask).mean() for logging, row by row (no graph, small temporaries)."""
        rows = [masked_entropy(row, mask) for row, mask in zip(logits.detach().split(1), cot_mask.split(1))]
        return torch.cat(rows).mean()

    def _policy_loss(self, logps: torch.Tensor, cot_mask: torch.Tensor, batch: dict) -> dict:
        """pg: -mean_t log pi * A; ei: the same with A = keep-weights; ppo: clipped surrogate vs the rollout policy."""
        method = self.args.method
        if method == "pg":
            return {"policy_loss": policy_gradient_loss(logps, batch["advantages"], cot_mask)}
        if method == "ei":
            return {"policy_loss": policy_gradient_loss(logps, batch["weights"], cot_mask)}
        columns = cot_mask.any(dim=0)  # every row's CoT sits in the same columns
        cot_logps, cot_only = logps[:, columns], cot_mask[:, columns]
        old = self._rollout_logps(cot_logps, batch)
        out = ppo_clipped_loss(cot_logps, old, batch["advantages"], cot_only, self.args.ppo_epsilon)
        return {"policy_loss": out["loss"], "ratio": out["ratio"], "clip_fraction": out["clip_fraction"]}

    def _rollout_logps(self, cot_logps: torch.Tensor, batch: dict) -> torch.Tensor:
        """log pi_rollout per CoT token: on pass 0 the weights are still the rollout's, so the current
        log-probs (detached) ARE the old ones; they are kept for the later passes (no extra forward)."""
        rows = batch["row_index"]
        if batch["rollout_pass"] == 0:
            self._old_logps[rows] = cot_logps.detach()
        return self._old_logps[rows]

    @torch.no_grad()
    def _critic_kl_logits(self, batch: dict) -> torch.Tensor:
        with self.reference_model() as critic:
            logits, _ = self._window_forward(critic, batch)
        return logits

    def _critic_kl(self, logits: torch.Tensor, window: dict, batch: dict) -> torch.Tensor:
        return masked_kl(logits, self._critic_kl_logits(batch), window["cot_mask"])

    def _actor_reward(self, model, batch: dict, logps: torch.Tensor, window: dict) -> torch.Tensor:
        """R_actor = mean_y log P_actor(y | x~, CoT) with grad (from the policy forward when non-Markovian)."""
        if not self.args.markovian:
            return masked_mean(logps, window["answer_mask"], dim=1)
        rows = {key[len("score_"):]: value for key, value in batch.items() if key.startswith("score_")}
        score_logits, score_window = self._window_forward(model, rows)
        score_logps = window_token_logps(score_logits, score_window["input_ids"])
        return masked_mean(score_logps, score_window["answer_mask"], dim=1)

    # ================================================================ VQ variant
    def _vq_rollout(self, prompts: dict[str, list]) -> dict:
        """No sampling: [x; placeholders] for the actor, [" Answer:"; " " + answer] for the fresh critic context."""
        args, k, pad = self.args, self.args.rloo_k, self.processing_class.pad_token_id
        x = _repeat([self._encode(actor_prompt(args.instruction, q)) for q in prompts["question"]], k)
        placeholders = [[pad] * args.vq_reason_length for _ in x]
        batch = self._actor_rows(x, placeholders)
        answers = _repeat([self._answer_ids(a) for a in prompts["answer"]], k)
        suffix_ids, suffix_mask, segments = pack_segments([[self.marker_ids] * len(x), answers], pad)
        batch.update(
            suffix_ids=suffix_ids, suffix_mask=suffix_mask, suffix_answer_mask=segments == 2,
            row_index=torch.arange(len(x)),
        )
        self._vq_texts = (list(prompts["question"]), list(prompts["answer"]))
        return {key: value.to(self.accelerator.device) for key, value in batch.items()}

    def _vq_objective(self, model, batch: dict) -> dict[str, torch.Tensor]:
        # loss = answer NLL under the frozen critic from [quantised CoT; " Answer:"; answer] + w * MSE(h, e.detach())
        hidden = self._vq_hidden(model, batch)
        with self.reference_model() as critic:  # requires_grad=False, but NOT no_grad: gradients reach the actor
            q = self._quantize(critic, hidden)
            inputs = self.vq_critic_inputs(critic, q["inputs"], q["indices"], batch)
            logits, window = self._window_forward(critic, inputs)
        nll = -masked_mean(window_token_logps(logits, window["input_ids"]), window["answer_mask"], dim=1).mean()
        loss = nll + self.args.vq_codebook_weight * q["codebook_loss"]
        if batch["rollout_pass"] == 0 and batch["row_index"][0] == 0:
            self._log_vq_samples(q["indices"])
        return {"loss": loss, "answer_nll": nll.detach(), "codebook_loss": q["codebook_loss"].detach()}

    def _vq_hidden(self, model, batch: dict) -> torch.Tensor:
        """Actor hidden states (layer vq_hidden_layer) at the placeholder columns, from one forward."""
        columns = batch["cot_mask"].any(dim=0)
        keep = {"logits_to_keep": 1} if self._logits_to_keep else {}
        out = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"],
            output_hidden_states=True, use_cache=False, **keep,
        )
        return out.hidden_states[self.args.vq_hidden_layer][:, columns]

    def _quantize(self, critic, hidden: torch.Tensor) -> dict:
        args, embedding = self.args, critic.get_input_embeddings()
        return quantize(
            hidden, embedding.weight, embedding, args.vq_sampling_temp, args.vq_use_argmax,
            args.vq_gumbel_softmax, args.vq_gumbel_tau,
        )

    def vq_critic_inputs(self, critic, codes: torch.Tensor, indices: torch.Tensor, batch: dict) -> dict:
        """The critic's fresh context [prefix (e.g. bos); codes; " Answer:"; answer]: no question token.

        `input_ids` holds the chosen code ids at the code columns (targets only matter on answers).
        """
        embedding = critic.get_input_embeddings()
        rows, device = codes.shape[0], codes.device
        prefix = torch.as_tensor(self.fresh_prefix_ids, dtype=torch.long, device=device).expand(rows, -1)
        ids = torch.cat([prefix, indices, batch["suffix_ids"]], dim=1)
        embeds = torch.cat([embedding(prefix), codes.to(embedding.weight.dtype), embedding(batch["suffix_ids"])], 1)
        ones = torch.ones_like(torch.cat([prefix, indices], dim=1))
        mask = torch.cat([ones, batch["suffix_mask"]], dim=1)
        answer_mask = torch.cat([torch.zeros_like(ones, dtype=torch.bool), batch["suffix_answer_mask"]], dim=1)
        return {"inputs_embeds": embeds, "input_ids": ids, "attention_mask": mask, "answer_mask": answer_mask}

    def _check_vq_shapes(self) -> None:
        model = self._base_model()
        layers = model.config.num_hidden_layers
        if not -(layers + 1) <= self.args.vq_hidden_layer <= layers:
            raise ValueError(
                f"vq_hidden_layer={self.args.vq_hidden_layer}: the model has {layers} layers "
                f"(hidden_states indices {-(layers + 1)}..{layers})"
            )
        with self.reference_model() as critic:
            width = critic.get_input_embeddings().weight.shape[1]
        if width != model.config.hidden_size:
            raise ValueError(
                f"use_vq=True needs the critic's embedding width ({width}) to equal the actor's "
                f"hidden_size ({model.config.hidden_size})"
            )

    def _log_vq_samples(self, indices: torch.Tensor) -> None:
        questions, answers = self._vq_texts
        texts = self.processing_class.batch_decode(indices[: self.args.num_logged_samples].tolist())
        k = self.args.rloo_k
        self.record_samples(
            [{"prompt": questions[i // k], "rationale": t, "answer": answers[i // k]} for i, t in enumerate(texts)]
        )

    # =============================================================== evaluation
    def evaluation_records(self, model, dataset) -> list[dict]:
        """Greedy CoT of cot_length tokens (VQ: argmax codes), then the scorer's greedy answer from x~ + CoT."""
        args = self.args
        limit = len(dataset) if args.max_eval_samples is None else min(args.max_eval_samples, len(dataset))
        # padded to the same length on every rank (ZeRO-3: same generate / forward calls everywhere);
        # empty only when the eval set is, i.e. on every rank at once
        indices, num_real = shard_indices(limit, self.accelerator.process_index, self.accelerator.num_processes)
        if not indices:
            return []
        rows = dataset.select(indices)
        questions, answers = list(rows["question"]), list(rows["answer"])
        cots = self._eval_cots(model, questions)
        with self._scorer(model) as scorer:
            completions = self._eval_answers(scorer, questions, answers, cots)
            logps = self._score(scorer, self.scoring_rows(questions, answers, cots))
        decode = self.processing_class.batch_decode
        rows = list(zip(indices, questions, answers, decode(cots), completions, logps))[:num_real]  # drop padding
        return [
            self._eval_record(i, q, a, cot, completion, float(lp)) for i, q, a, cot, completion, lp in rows
        ]

    def _eval_cots(self, model, questions: list[str]) -> list[list[int]]:
        prompts = [self._encode(actor_prompt(self.args.instruction, q)) for q in questions]
        if not self.args.use_vq:
            return self._generate_cots(model, prompts, greedy=True) if prompts else []
        pad, cots = self.processing_class.pad_token_id, []
        for start in range(0, len(prompts), self.args.per_device_eval_batch_size):
            chunk = prompts[start : start + self.args.per_device_eval_batch_size]
            batch = self._actor_rows(chunk, [[pad] * self.args.vq_reason_length for _ in chunk])
            with torch.no_grad():
                # the actor's hidden states BEFORE entering the critic: with LoRA the critic is the same
                # module with its adapter disabled, so a forward inside would quantise the base model
                hidden = self._vq_hidden(model, {k: v.to(self.accelerator.device) for k, v in batch.items()})
                with self.reference_model() as critic:
                    embedding = critic.get_input_embeddings()
                    cots += quantize(hidden, embedding.weight, embedding)["indices"].tolist()  # argmax codes
        return cots

    def _eval_answers(self, scorer, questions, answers, cots) -> list[str]:
        if not questions:
            return []
        prompts = [self._scoring_prefix(q) + cot + self.marker_ids for q, cot in zip(questions, cots)]
        budget = self.args.eval_max_new_tokens or max(
            DEFAULT_EVAL_ANSWER_TOKENS, max(len(self._answer_ids(a)) for a in answers)
        )
        config = sampling_config(
            self.args, self.processing_class.pad_token_id, self.stop_ids, greedy=True, max_new_tokens=budget
        )
        ids = generate(scorer, prompts, config, self.args.per_device_eval_batch_size)
        return self.processing_class.batch_decode(ids, skip_special_tokens=True)

    def _eval_record(self, index, question, answer, cot_text, completion, answer_logprob) -> dict:
        name = self.eval_checker_name()
        completion = f"{ANSWER_MARKER.strip()}{completion}"
        if checker_for(name) == CHECKER_NONE:  # wiki tasks: exact continuation / reconstruction
            prediction = completion[len(ANSWER_MARKER.strip()) :].strip()
            correct = prediction.startswith(answer.strip()) and bool(answer.strip())
        else:
            prediction, correct = extract_answer(name, completion), is_correct(name, completion, answer)
        return {
            "index": index, "query": question, "groundtruth": answer, "rationale": cot_text,
            "completion": completion, "prediction": prediction, "correct": correct,
            "answer_logprob": answer_logprob,
        }

    # ================================================================== helpers
    def _encode(self, text: str) -> list[int]:
        return encode_prompt(self.processing_class, text, self.args.max_prompt_length)

    def _scoring_prefix(self, question: str) -> list[int]:
        if self.args.use_vq:
            return list(self.fresh_prefix_ids)
        return self._encode(scoring_prompt(self.args.instruction, question, self.args.markovian))

    def _answer_ids(self, answer: str) -> list[int]:
        """ids(" " + answer): the space goes before the answer, never at the end of a prompt."""
        return encode_continuation(self.processing_class, f" {str(answer).strip()}")

    @contextmanager
    def _scorer(self, actor=None):
        """The model that scores log P(answer | CoT): the frozen critic, or the actor (`scorer="actor"`)."""
        if self.args.scorer == "actor" and not self.args.use_vq:
            yield actor if actor is not None else self.model
            return
        with self.reference_model() as critic:
            yield critic

    def _window_forward(self, model, rows: dict, targets=("cot_mask", "answer_mask")) -> tuple[torch.Tensor, dict]:
        """Logits only from the column before the first target token on (logits_to_keep).

        `targets` names the masks of the tokens that will be scored. Returns the (B, W, V)
        logits and the rows' tensors cut to the same W columns.
        """
        scored = torch.stack([rows[name] for name in targets if name in rows]).any(dim=0)
        start = int(scored.any(dim=0).nonzero()[0]) - 1
        end = int(rows["attention_mask"].any(dim=0).nonzero()[-1]) + 1
        if start < 0:
            raise ValueError("a scored row has no context token before its first target token")
        kwargs = {"attention_mask": rows["attention_mask"][:, :end], "use_cache": False}
        if "inputs_embeds" in rows:
            kwargs["inputs_embeds"] = rows["inputs_embeds"][:, :end]
        else:
            kwargs.update(input_ids=rows["input_ids"][:, :end], position_ids=rows["position_ids"][:, :end])
        if self._logits_to_keep:
            logits = model(**kwargs, logits_to_keep=end - start).logits
        else:
            logits = model(**kwargs).logits[:, start:end]
        window = {key: rows[key][:, start:end] for key in WINDOW_KEYS if key in rows}
        return logits, window

    def _base_model(self):
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def _zero3(self) -> bool:
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        return bool(self.is_deepspeed_enabled and plugin is not None and plugin.zero_stage == 3)

    # ================================================================== logging
    def _log_rollout(self, questions, answers, cots, base_cots, scores, base_scores, rewards, advantages, weights):
        for name, value in (
            ("reward", rewards),
            ("scorer_logprob", scores),
            ("baseline_logprob", base_scores),
            ("advantage_mean", advantages),
            ("advantage_std", advantages.std() if len(advantages) > 1 else advantages.new_zeros(())),
        ):
            self._metrics[name].append(float(value.float().mean()))
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

    # ============================================================ state in checkpoints
    def extra_state(self) -> dict:
        return {
            **super().extra_state(),
            "ema_baseline": self.ema_baseline,
            "ei_history": self.reward_history.state_dict(),
        }

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        self.ema_baseline = state.get("ema_baseline")
        if "ei_history" in state:
            self.reward_history = RewardHistory.from_state_dict(state["ei_history"])
