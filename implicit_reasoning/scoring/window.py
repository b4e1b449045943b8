"""One forward over packed rows, for every trainer and for fragility analysis.

* forward: :func:`forward_window` runs the model ONCE over packed rows (:mod:`.packing`) and computes
  logits only from the column before the first scored token on (``logits_to_keep``), so prompt
  positions never reach the LM head; :mod:`.logprobs` gathers and reduces their float32 log-probs.
* log-probs without logits: :func:`window_logprobs` runs the same ONE forward but keeps
  only the final hidden states and sends the scored positions through the LM head in
  chunks (:mod:`implicit_reasoning.scoring.lm_head`), so no (B, W, V) logits exist in the
  forward or the backward; it falls back to the logits path where that is not exact.
* :func:`score_rows` / :func:`score_segments`: per-row sums or means of named segments, in one pass.

Window convention: ``logits`` (B, W, V) and the window's ``input_ids`` / masks (B, W)
cover the same W columns; the logits at column t-1 predict the token at column t, so
column 0 of a window is never scored.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence

import torch

from ..runtime.kv_cache import prefix_cached_kwargs
from ..runtime.models import innermost_model
from .lm_head import masked_head_logprobs
from .logprobs import segment_reduce, token_logprobs
from .packing import ROW_KEYS


# ------------------------------------------------------------------------------- forward
def accepts_logits_to_keep(model) -> bool:
    """Whether the model under any wrapper takes ``logits_to_keep`` (transformers causal LMs do; the
    wrappers pass keyword arguments through)."""
    return "logits_to_keep" in inspect.signature(innermost_model(model).forward).parameters


def _window_bounds(rows: dict, scored: torch.Tensor) -> tuple[int, int]:
    """(start, end) columns of the window of ``scored``: from the column before the first scored
    token to the last column holding any real token."""
    used = scored.any(dim=0).nonzero()
    if len(used) == 0:
        raise ValueError("forward_window: no token is scored")
    start = int(used[0]) - 1
    if start < 0:
        raise ValueError("forward_window: a scored token has no context token before it")
    return start, int(rows["attention_mask"].any(dim=0).nonzero()[-1]) + 1


def _forward_kwargs(rows: dict, end: int) -> dict:
    """Model keyword arguments for the first ``end`` columns of ``rows`` (ids, or embeddings when given)."""
    kwargs = {"attention_mask": rows["attention_mask"][:, :end], "use_cache": False}
    if "inputs_embeds" in rows:
        kwargs["inputs_embeds"] = rows["inputs_embeds"][:, :end]
    else:
        kwargs["input_ids"] = rows["input_ids"][:, :end]
    if "position_ids" in rows:
        kwargs["position_ids"] = rows["position_ids"][:, :end]
    return kwargs


def _window_forward(model, rows: dict, start: int, end: int, shared_prefill: bool) -> tuple[dict, int]:
    """Model keyword arguments of the forward that gives a window's outputs, and the first column it runs: 0,
    or with ``shared_prefill`` the width of a prompt prefix run once per distinct row and given as a KV cache
    (`kv_cache.prefix_cached_kwargs`; 0 when no row shares its prefix)."""
    kwargs = _forward_kwargs(rows, end)
    return prefix_cached_kwargs(model, kwargs, start, rows.get("segment_ids")) if shared_prefill else (kwargs, 0)


def _cut_window(rows: dict, start: int, end: int) -> dict:
    """The per-column (B, T) tensors of ``rows`` cut to columns [start, end)."""
    return {k: v[:, start:end] for k, v in rows.items() if torch.is_tensor(v) and v.dim() == 2 and v.shape[1] >= end}


def forward_window(model, rows: dict, scored: torch.Tensor, shared_prefill: bool = False) -> tuple[torch.Tensor, dict]:
    """ONE forward over packed ``rows``; logits only from the column before the first scored token.

    ``scored`` (B, T) marks the tokens whose log-prob will be used. Returns the (B, W, V)
    logits and the per-column tensors of ``rows`` cut to the same W columns (the window).
    ``rows`` may carry ``inputs_embeds`` instead of ids for the forward (ids then only name
    the targets). Trailing all-padding columns are dropped. Use :func:`window_logprobs` when
    only log-probs are needed: it never builds the (B, W, V) logits. ``shared_prefill`` (no grad):
    rows that share their prompt run it once (see :func:`_window_forward`).
    """
    start, end = _window_bounds(rows, scored)
    kwargs, first = _window_forward(model, rows, start, end, shared_prefill)
    if accepts_logits_to_keep(model):
        logits = model(**kwargs, logits_to_keep=end - start).logits
    else:
        logits = model(**kwargs).logits[:, start - first : end - first]
    return logits, _cut_window(rows, start, end)


# ------------------------------------------------------------- log-probs without logits
# config fields that change logits after the head's matmul: any set value makes h @ W.T inexact
SOFTCAP_FIELDS = ("final_logit_softcapping", "logit_softcapping", "logits_soft_cap", "output_logit_soft_cap",
                  "unpadded_vocab_size")  # the last: logits sliced to fewer entries than the head has rows
SCALE_FIELDS = ("logit_scale", "logits_scaling", "lm_head_multiplier", "output_multiplier_scale",
                "output_multiplier", "logits_mup_width_multiplier")


def _transforms_logits(config) -> bool:
    """Whether the config (or its text config) post-processes the head's output (soft-capping, scaling)."""
    configs = [config]
    if hasattr(config, "get_text_config"):
        configs.append(config.get_text_config())
    for c in configs:
        if any(getattr(c, f, None) is not None for f in SOFTCAP_FIELDS):
            return True
        if any(getattr(c, f, None) not in (None, 1, 1.0) for f in SCALE_FIELDS):
            return True
    return False


def chunkable_head(model) -> torch.nn.Linear | None:
    """The output embedding when ``log_softmax(h_final @ W.T + b)`` is exactly the model's log-prob, else None.

    None (so callers take the logits path) when the head is not a plain ``nn.Linear`` (a
    LoRA / quantised / custom head), the config soft-caps or scales logits, the weight is
    partitioned by ZeRO-3 (it only exists inside the model's own forward), the model has no
    transformer body to read final hidden states from, or it cannot skip the full-window
    logits (no ``logits_to_keep``).
    """
    if not accepts_logits_to_keep(model):
        return None
    inner = innermost_model(model)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if type(head) is not torch.nn.Linear or _body(inner) is None or _transforms_logits(inner.config):
        return None
    if hasattr(head.weight, "ds_id") or head.weight.numel() == 0:
        return None
    return head


def _body(inner) -> torch.nn.Module | None:
    """The transformer body under the LM head (transformers' ``base_model``), None if the model has none."""
    body = getattr(inner, "base_model", None)
    return body if isinstance(body, torch.nn.Module) and body is not inner else None


def _last_hidden(output) -> torch.Tensor | None:
    """``last_hidden_state`` of a base model's output (a ModelOutput or a tuple), None if it has none."""
    if hasattr(output, "last_hidden_state"):
        return output.last_hidden_state
    return output[0] if isinstance(output, tuple) and output and torch.is_tensor(output[0]) else None


def _forward_final_hidden(model, kwargs: dict, head: torch.nn.Module):
    """ONE forward through ``model``'s own ``__call__`` (DDP / peft hooks run) with one column of logits;
    returns (those logits, the body's final hidden states (B, T, H) or None if it gave none, the dtype
    ``head`` multiplied in).

    The hidden states are read by a forward hook on the transformer body, not with
    ``output_hidden_states``: that would keep every layer's (B, T, H) output alive until the
    head has run, which in a no-grad pass outweighs the chunked head itself. The head's
    output dtype is read by a hook too: accelerate's mixed precision autocasts inside
    ``model.forward`` only, so the chunked head, which runs after it, could not see it.
    """
    captured, dtypes = [], []
    hooks = [
        _body(innermost_model(model)).register_forward_hook(lambda m, a, output: captured.append(_last_hidden(output))),
        head.register_forward_hook(lambda m, a, output: dtypes.append(output.dtype)),
    ]
    try:
        logits = model(**kwargs, logits_to_keep=1).logits
    finally:
        for hook in hooks:
            hook.remove()
    return logits, captured[-1] if captured else None, dtypes[-1] if dtypes else None


@torch.no_grad()
def _head_reproduces(logits: torch.Tensor, hidden: torch.Tensor, head: torch.nn.Linear,
                     dtype: torch.dtype | None = None) -> bool:
    """Whether ``head(hidden)`` gives the model's own logits at the last column (a one-column check that
    ``hidden`` really is what the head consumes, post final norm, untransformed after), multiplied in
    ``dtype`` (the head's dtype in the model's forward; default the weight's)."""
    dtype = dtype or head.weight.dtype
    bias = None if head.bias is None else head.bias.to(dtype)
    mine = torch.nn.functional.linear(hidden[:, -1:].to(dtype), head.weight.to(dtype), bias).float()
    theirs = logits[:, -1:].float()
    if mine.shape != theirs.shape:  # a vocabulary-sliced head
        return False
    # float32: rounding of one matmul only (a mild soft-cap or scale must not pass); half precision: its epsilon
    tol = 1e-4 if dtype == torch.float32 and logits.dtype == torch.float32 else 2e-2
    return bool((mine - theirs).abs().max() <= tol * theirs.abs().max().clamp(min=1.0))


def _entropy_from_logits(logits: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """(B, W) float32 entropy of the distribution predicting each scored window token (no grad, row by row)."""
    out = torch.zeros(scored.shape, dtype=torch.float32, device=logits.device)
    with torch.no_grad():
        for i in range(logits.shape[0]):
            logp = torch.log_softmax(logits[i, :-1][scored[i, 1:]].float(), dim=-1)
            out[i, 1:][scored[i, 1:]] = -(logp.exp() * logp).sum(dim=-1)
    return out


def _logits_window_logprobs(model, rows: dict, scored: torch.Tensor, entropy: bool, temperature: float = 1.0,
                            shared_prefill: bool = False) -> tuple[torch.Tensor, dict]:
    """:func:`window_logprobs` through the full-window logits (the fallback: always exact)."""
    logits, window = forward_window(model, rows, scored, shared_prefill)
    if temperature != 1.0:
        logits = logits / temperature
    start, end = _window_bounds(rows, scored)
    scored = scored[:, start:end].bool()
    logps = torch.where(scored, token_logprobs(logits, window["input_ids"]), 0.0)
    if entropy:
        window["token_entropy"] = _entropy_from_logits(logits, scored)
    return logps, window


def window_hidden(model, rows: dict, scored: torch.Tensor, head: torch.nn.Linear, shared_prefill: bool = False):
    """The one forward of the chunked-head paths: (hidden (B, W-1, H) whose column t predicts window column
    t + 1, the dtype the head multiplied in, the window, the (B, W-1) mask of scored targets), or None (with a
    warning) when the body gave no final hidden states from which ``head`` reproduces the model's logits."""
    start, end = _window_bounds(rows, scored)
    kwargs, first = _window_forward(model, rows, start, end, shared_prefill)
    logits, hidden, head_dtype = _forward_final_hidden(model, kwargs, head)
    if hidden is None or not _head_reproduces(logits, hidden, head, head_dtype):
        warnings.warn("no final hidden states that reproduce the logits; using full logits")
        return None
    mask = scored[:, start + 1 : end].bool()  # hidden at column t predicts the token at t + 1
    return hidden[:, start - first : end - 1 - first], head_dtype, _cut_window(rows, start, end), mask


def window_logprobs(model, rows: dict, scored: torch.Tensor, entropy: bool = False, temperature: float = 1.0,
                    shared_prefill: bool = False) -> tuple[torch.Tensor, dict]:
    """(B, W) float32 log p(token) of the ``scored`` tokens of :func:`forward_window`'s window, and the window.

    Same convention as ``token_logprobs(*forward_window(...))``, except that unscored
    columns are 0. ONE forward through the model's own ``__call__`` (wrappers' hooks run)
    with a one-column ``logits_to_keep``, the final hidden states read off the transformer
    body (:func:`_forward_final_hidden`); the scored positions' hidden rows then go through
    the LM head in chunks (:func:`~implicit_reasoning.scoring.lm_head.masked_head_logprobs`),
    so no (B, W, V) tensor exists in either pass. With ``entropy`` the window also gets
    ``token_entropy`` (no grad, 0 where unscored). Falls back to the logits path (exact
    always) when :func:`chunkable_head` says the chunked head would not be exact, or when
    the body gave no final hidden states from which the head reproduces the model's own
    last-column logits (then a second forward, with a warning). ``temperature`` T scores
    softmax(logits / T) (PPO's sampling distribution): h / T and b / T go through the head.
    ``shared_prefill`` (no grad): rows with the same prompt run it once, as a shared KV cache.
    """
    head = chunkable_head(model)
    found = window_hidden(model, rows, scored, head, shared_prefill) if head is not None else None
    if found is None:
        return _logits_window_logprobs(model, rows, scored, entropy, temperature, shared_prefill)
    hidden, head_dtype, window, mask = found
    bias = head.bias
    if temperature != 1.0:  # (h W^T + b) / T = (h / T) W^T + b / T
        hidden, bias = hidden / temperature, None if bias is None else bias / temperature
    logps, token_entropy = masked_head_logprobs(
        hidden, head.weight, bias, window["input_ids"][:, 1:], mask, with_entropy=entropy, compute_dtype=head_dtype
    )
    pad = logps.new_zeros(logps.shape[0], 1)
    if entropy:
        window["token_entropy"] = torch.cat([pad, token_entropy], dim=1)
    return torch.cat([pad, logps], dim=1), window


@torch.no_grad()
def score_rows(
    model, rows: dict, segments: Sequence[int], chunk_size: int, reduce: str = "sum", shared_prefill: bool = False
) -> dict[int, torch.Tensor]:
    """Float32 per-row sums (or means) of the log-probs of several segments; no grad.

    One forward per chunk of ``chunk_size`` rows, so each sequence is seen by the model
    exactly once and the (chunk, W, V) logits are the largest tensor alive. Returned on CPU.
    ``shared_prefill``: the rows of a chunk that share their first segment (the prompt) run it once
    (one more, shorter forward over the distinct prompts, whose KV cache the rows continue).
    """
    device = next(model.parameters()).device
    out: dict[int, list[torch.Tensor]] = {s: [] for s in segments}
    for start in range(0, rows["input_ids"].shape[0], chunk_size):
        chunk = {k: v[start : start + chunk_size].to(device) for k, v in rows.items() if k in ROW_KEYS}
        scored = torch.zeros_like(chunk["segment_ids"], dtype=torch.bool)
        for s in segments:
            scored |= chunk["segment_ids"] == s
        if not scored.any():  # e.g. every rationale of the chunk is empty: log-prob sums are 0, no forward
            for s in segments:
                out[s].append(torch.zeros(chunk["segment_ids"].shape[0]))
            continue
        logps, window = window_logprobs(model, chunk, scored, shared_prefill=shared_prefill)
        for s in segments:
            out[s].append(segment_reduce(logps, window["segment_ids"], s, reduce).cpu())
    return {s: torch.cat(v) for s, v in out.items()}


def score_segments(model, input_ids, attention_mask, segment_ids, segments, chunk_size) -> dict[int, torch.Tensor]:
    """Summed float32 log-probs of ``segments`` of right-padded packed rows (see :func:`score_rows`)."""
    rows = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0),
        "segment_ids": segment_ids,
    }
    return score_rows(model, rows, segments, chunk_size, "sum")
