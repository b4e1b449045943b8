"""Generation that also returns the log-probs scoring would otherwise recompute.

Generation has already run the policy over every sampled token: at step t the model's raw
logits (before temperature / top-k / top-p) give log pi(z_t | x, z_<t), and its KV cache holds
the keys and values of [x; z]. So, with the same weights and in the same eval mode:

* log pi(z | x) is the sum of the raw log-probs of the kept tokens, recorded during
  generation by :class:`LogprobRecorder` (one (B, V) row alive at a time, never (B, S, V));
* log pi(y | x, z) continues the cache over the answer tokens only (:func:`continue_cache`):
  a row keeps its cached prefix up to its cut (the stop), the last kept token is fed again
  (its logits predict y_1), then y; cache columns past the cut are masked out.

That replaces a no-grad policy forward over [x; z; y] by (|y| + 1) tokens per row. The values
equal the full-pass ones up to float rounding (incremental vs. whole-sequence attention).
Log-probs are at temperature 1 (the policy's own distribution), the convention of every
scorer here. Where the cache cannot be continued exactly (a cache type that drops or
reorders entries, extra steps under ZeRO-3 ``synced_gpus``), the result says so and the caller
scores the same tokens with a full pass instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, StoppingCriteriaList

from ..generation.sampling import StopOnSequences, left_pad, neutral_generation_config
from ..runtime.kv_cache import cache_argument, generation_prompt_cache, output_cache
from .logprobs import selective_log_softmax


class CacheReuseError(RuntimeError):
    """Generation's KV cache cannot be continued exactly here; score with a full forward instead."""


class LogprobRecorder(LogitsProcessor):
    """Records log pi(token | prefix) of every sampled token from the raw (unwarped) logits.

    Must run before any processor that changes logits: transformers places custom processors
    after its own non-warping ones and before the warpers, so the caller keeps every
    non-warping processor neutral (see :func:`generate_scored`). At step t it keeps the
    float32 log-softmax of step t; the token sampled from it is read at step t + 1 (or by
    :meth:`finish` for the last step).
    """

    def __init__(self, prompt_width: int, temperature: float = 1.0):
        self.prompt_width, self.temperature = prompt_width, temperature
        self.steps: list[torch.Tensor] = []
        self._last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > self.prompt_width:
            self._collect(input_ids[:, -1])
        self._last = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def _collect(self, tokens: torch.Tensor) -> None:
        self.steps.append(self._last.gather(-1, tokens.unsqueeze(-1)).squeeze(-1))
        self._last = None

    def finish(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """(B, S) float32 log-probs of the S generated tokens."""
        if self._last is not None:
            self._collect(new_tokens[:, -1])
        if len(self.steps) != new_tokens.shape[1]:
            raise CacheReuseError(f"recorded {len(self.steps)} steps for {new_tokens.shape[1]} generated tokens")
        return torch.stack(self.steps, dim=1)


class SuppressUntil(LogitsProcessor):
    """`min_new_tokens` placed AFTER the recorder: the eos ban shapes sampling, not the recorded log-probs."""

    def __init__(self, min_new_tokens: int, eos_token_ids: Sequence[int], prompt_width: int):
        self.min_new_tokens, self.prompt_width = min_new_tokens, prompt_width
        self.eos = torch.as_tensor(list(eos_token_ids), dtype=torch.long)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] - self.prompt_width < self.min_new_tokens:
            scores = scores.clone()
            scores[:, self.eos.to(scores.device)] = -float("inf")
        return scores


@torch.no_grad()
def continue_cache(model, cache, prompt_mask: torch.Tensor, prompt_ids: torch.Tensor, new_tokens: torch.Tensor,
                   kept: torch.Tensor, answers: Sequence[Sequence[int]], pad_token_id: int) -> torch.Tensor:
    """(B,) float32 log pi(y | x, z) where z is the first ``kept[i]`` generated tokens of row i.

    ``cache`` holds [x; all generated tokens but the last] (P + S - 1 columns, prompts left-padded
    to width P). Row i feeds [last kept token; y_i] at its own positions; cache columns from
    the last kept token on are masked, so the answer attends to exactly [x_i; z_i].
    """
    batch, width = prompt_ids.shape
    steps = new_tokens.shape[1]
    if cache.get_seq_length() != width + steps - 1:
        raise CacheReuseError(f"cache holds {cache.get_seq_length()} columns, expected {width + steps - 1}")
    device = new_tokens.device
    kept = kept.to(device)
    last_column = width + kept - 1  # column of the last kept token ([x; z] with z = tokens[:kept])
    columns = torch.arange(width + steps - 1, device=device)
    cached_mask = torch.cat([prompt_mask, torch.ones(batch, steps - 1, dtype=prompt_mask.dtype, device=device)], 1)
    cached_mask = cached_mask * (columns.unsqueeze(0) < last_column.unsqueeze(1))
    full = torch.cat([prompt_ids, new_tokens], dim=1)
    last_token = full.gather(1, last_column.unsqueeze(1))
    fed_ids, fed_mask = _right_pad([[int(t)] + list(y) for t, y in zip(last_token[:, 0].tolist(), answers)],
                                   pad_token_id, device)
    start = prompt_mask.sum(dim=1) + kept - 1  # position id of the last kept token
    positions = start.unsqueeze(1) + torch.arange(fed_ids.shape[1], device=device).unsqueeze(0)
    logits = model(input_ids=fed_ids, attention_mask=torch.cat([cached_mask, fed_mask], dim=1),
                   position_ids=positions, use_cache=True, **{cache_argument(model): cache}).logits
    logps = selective_log_softmax(logits[:, :-1], fed_ids[:, 1:])
    return (logps * fed_mask[:, 1:]).sum(dim=1)


def _right_pad(rows: list[list[int]], pad_token_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


@dataclass
class ScoredGeneration:
    tokens: torch.Tensor  # (N, max_new_tokens) generated tokens, right-padded with pad
    token_logps: torch.Tensor | None  # (N, max_new_tokens) float32 raw log-probs of those tokens (0 past the end)
    answer_logps: torch.Tensor | None  # (N,) float32 log pi(y | x, z), z = tokens[:kept]; None without answers
    failure: str | None = None  # why the log-probs could not be taken from generation (then both are None)


@torch.no_grad()
def generate_scored(
    model,
    prompts: Sequence[Sequence[int]],
    generation_config: GenerationConfig,
    batch_size: int,
    stop_seqs: Sequence[Sequence[int]] = (),
    answers: Sequence[Sequence[int]] | None = None,
    kept_length: Callable[[torch.Tensor], torch.Tensor] | None = None,
    logprob_temperature: float = 1.0,
    shared_prefill: bool = False,
) -> ScoredGeneration:
    """:func:`generation.sampling.generate` that also returns generation's own log-probs.

    ``answers[i]`` (with ``kept_length``: generated tokens (B, S) -> tokens kept per row, i.e.
    where the rationale is cut) are scored by continuing the cache. Token log-probs are of
    softmax(logits / ``logprob_temperature``): 1 = the policy's own distribution (LaTRO's KL), the
    sampling temperature = the distribution that sampled them before top-k / top-p (PPO's ratio). Where that cannot be done
    exactly the tokens are still returned, with ``failure`` saying why and no log-probs.
    ``shared_prefill``: one prefill per distinct prompt of a chunk (see :func:`generation.sampling.generate`).
    """
    width, pad = generation_config.max_new_tokens, generation_config.pad_token_id
    device = next(model.parameters()).device
    tokens = torch.full((len(prompts), width), pad, dtype=torch.long)
    token_logps = torch.zeros((len(prompts), width))
    answer_logps = torch.zeros(len(prompts)) if answers is not None else None
    config = GenerationConfig(**{**generation_config.to_dict(), "min_new_tokens": None,
                                 "return_dict_in_generate": True})
    was_training, failure = model.training, None
    model.eval()
    try:
        with neutral_generation_config(model):
            for start in range(0, len(prompts), batch_size):
                rows = slice(start, start + batch_size)
                ids, mask = (t.to(device) for t in left_pad(prompts[rows], pad))
                recorder = LogprobRecorder(ids.shape[1], logprob_temperature)
                processors = [recorder]
                if generation_config.min_new_tokens and generation_config.eos_token_id is not None:
                    eos = generation_config.eos_token_id
                    processors.append(SuppressUntil(generation_config.min_new_tokens,
                                                    eos if isinstance(eos, list) else [eos], ids.shape[1]))
                criteria = StoppingCriteriaList([StopOnSequences(stop_seqs, ids.shape[1])]) if stop_seqs else None
                cache = generation_prompt_cache(model, ids, mask) if shared_prefill else {}
                out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                     logits_processor=LogitsProcessorList(processors), stopping_criteria=criteria,
                                     **cache)
                new = out.sequences[:, ids.shape[1]:]
                tokens[rows][:, : new.shape[1]] = new.cpu()
                if failure is not None:
                    continue
                try:
                    token_logps[rows][:, : new.shape[1]] = recorder.finish(new).cpu()
                    if answers is not None:  # answers are scored at temperature 1
                        answer_logps[rows] = continue_cache(model, output_cache(out), mask, ids, new,
                                                            kept_length(new), answers[rows], pad).cpu()
                except CacheReuseError as error:
                    failure = str(error)  # keep generating; the caller scores these tokens with a full pass
    finally:
        model.train(was_training)
    if failure is not None:
        return ScoredGeneration(tokens, None, None, failure)
    return ScoredGeneration(tokens, token_logps, answer_logps)
