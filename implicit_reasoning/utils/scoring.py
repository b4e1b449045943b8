"""One scoring stack for every trainer and for fragility analysis.

Three pieces, each a pure function of tensors (the forward helpers take a model but keep
no state):

* packing: :func:`pack_rows` concatenates per-row token segments ([x; z; y], [x~; CoT;
  " Answer:"; y], ...) into padded (B, T) tensors with a ``segment_ids`` map. With
  ``align`` one segment starts at the same column in every row (earlier segments are
  left-padded), so the LM head can skip every column before it.
* forward: :func:`forward_window` runs the model ONCE over packed rows and computes logits
  only from the column before the first scored token on (``logits_to_keep``), so prompt
  positions never reach the LM head.
* log-probs and reducers: :func:`token_logprobs` gathers log p(token) in float32 from
  logits of any dtype without materialising float32 (B, T, V) tensors, and
  :func:`segment_reduce` sums / averages them per row in float32.

Window convention: ``logits`` (B, W, V) and the window's ``input_ids`` / masks (B, W)
cover the same W columns; the logits at column t-1 predict the token at column t, so
column 0 of a window is never scored.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

PAD_SEGMENT = 0  # segment id of padding; segment j of the input gets id j + 1
ROW_KEYS = ("input_ids", "attention_mask", "position_ids", "segment_ids")


# ------------------------------------------------------------------------------ packing
def pack_rows(
    segments: Sequence[Sequence[Sequence[int]]], pad_token_id: int, align: int | None = None
) -> dict[str, torch.Tensor]:
    """Concatenate per-row token segments and pad.

    ``segments[s][i]`` is the token list of segment ``s`` of row ``i``. Rows are right-padded;
    with ``align=s`` the segments before ``s`` are left-padded so that segment ``s`` starts at
    the same column in every row. Returns (B, T) ``input_ids``, ``attention_mask``,
    ``position_ids`` (counting real tokens only, so left padding shifts nothing) and
    ``segment_ids`` (``s + 1`` on tokens of segment ``s``, 0 on padding).
    """
    rows = [[list(seg[i]) for seg in segments] for i in range(len(segments[0]))]
    lead = [sum(len(s) for s in row[:align]) for row in rows] if align is not None else [0] * len(rows)
    offset = [max(lead) - n for n in lead]
    width = max(o + sum(len(s) for s in row) for o, row in zip(offset, rows))
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    segment_ids = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        start = offset[i]
        for s, tokens in enumerate(row):
            input_ids[i, start : start + len(tokens)] = torch.as_tensor(tokens, dtype=torch.long)
            segment_ids[i, start : start + len(tokens)] = s + 1
            start += len(tokens)
    mask = (segment_ids != PAD_SEGMENT).long()
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "position_ids": (mask.cumsum(dim=1) - 1).clamp(min=0),
        "segment_ids": segment_ids,
    }


def pack_segments(segments, pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask, segment_ids)`` of :func:`pack_rows` (no alignment)."""
    rows = pack_rows(segments, pad_token_id)
    return rows["input_ids"], rows["attention_mask"], rows["segment_ids"]


# ---------------------------------------------------------------------- log-prob gather
class _SelectiveLogSoftmax(torch.autograd.Function):
    """log softmax(logits)[index] in float32, row by row; backward recomputes softmax the same way.

    Saves the logits in their own dtype (as log_softmax saves its output) plus one float32
    log-sum-exp per position, so neither pass holds a float32 (B, T, V) tensor.
    """

    @staticmethod
    def forward(ctx, logits, index, chunk):
        out = torch.empty(index.shape, dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(out)
        for start in range(0, logits.shape[0], chunk):
            rows = logits[start : start + chunk].float()
            lse[start : start + chunk] = torch.logsumexp(rows, dim=-1)
            picked = rows.gather(-1, index[start : start + chunk].unsqueeze(-1)).squeeze(-1)
            out[start : start + chunk] = picked - lse[start : start + chunk]
        ctx.save_for_backward(logits, index, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad):
        logits, index, lse = ctx.saved_tensors
        grad_logits = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ctx.chunk):
            rows = slice(start, start + ctx.chunk)
            g = grad[rows].float().unsqueeze(-1)
            # d/dx_v [x_i - lse(x)] = 1[v = i] - softmax(x)_v
            part = -torch.exp(logits[rows].float() - lse[rows].unsqueeze(-1)) * g
            part.scatter_add_(-1, index[rows].unsqueeze(-1), g)
            grad_logits[rows] = part.to(logits.dtype)
        return grad_logits, None, None


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor, chunk: int = 1) -> torch.Tensor:
    """log softmax(logits, -1) gathered at ``index``, in float32 whatever the logits' dtype.

    trl's helper of the same name returns bf16 log-probs for bf16 logits (its per-token
    rounding then accumulates in every sum); this one keeps float32 and, like it, never
    materialises float32 (B, T, V) logits: ``chunk`` rows at a time.
    """
    return _SelectiveLogSoftmax.apply(logits, index, chunk)


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """(B, W) float32 log p(token_t | logits_{t-1}) of a window; column 0 (no predictor) is 0."""
    logps = selective_log_softmax(logits[:, :-1], input_ids[:, 1:])
    return torch.cat([logps.new_zeros(logps.shape[0], 1), logps], dim=1)


# ------------------------------------------------------------------------------ reducers
def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Float32 sum of ``values`` where ``mask`` is set (over ``dim``, or all)."""
    values = values.float() * mask.float()
    return values.sum() if dim is None else values.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Float32 mean of ``values`` where ``mask`` is set (over ``dim``, or all); 0 where nothing is set."""
    count = mask.float().sum() if dim is None else mask.float().sum(dim=dim)
    return masked_sum(values, mask, dim) / count.clamp(min=1)


def segment_reduce(token_logps: torch.Tensor, segment_ids: torch.Tensor, segment: int, reduce: str = "sum"):
    """Per-row float32 sum (or mean) of per-token log-probs over the tokens of one segment."""
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce={reduce!r}: must be 'sum' or 'mean'")
    mask = segment_ids == segment
    return masked_sum(token_logps, mask, dim=1) if reduce == "sum" else masked_mean(token_logps, mask, dim=1)


# ------------------------------------------------------------------------------- forward
def innermost_model(model):
    """The transformers model under DDP / DeepSpeed (`.module`) and peft (`get_base_model()`) wrappers."""
    while True:
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), torch.nn.Module):
            model = model.module
        else:
            return model


def accepts_logits_to_keep(model) -> bool:
    """Whether the model under any wrapper takes ``logits_to_keep`` (transformers causal LMs do; the
    wrappers pass keyword arguments through)."""
    return "logits_to_keep" in inspect.signature(innermost_model(model).forward).parameters


def forward_window(model, rows: dict, scored: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """ONE forward over packed ``rows``; logits only from the column before the first scored token.

    ``scored`` (B, T) marks the tokens whose log-prob will be used. Returns the (B, W, V)
    logits and the per-column tensors of ``rows`` cut to the same W columns (the window).
    ``rows`` may carry ``inputs_embeds`` instead of ids for the forward (ids then only name
    the targets). Trailing all-padding columns are dropped.
    """
    used = scored.any(dim=0).nonzero()
    if len(used) == 0:
        raise ValueError("forward_window: no token is scored")
    start = int(used[0]) - 1
    if start < 0:
        raise ValueError("forward_window: a scored token has no context token before it")
    end = int(rows["attention_mask"].any(dim=0).nonzero()[-1]) + 1
    kwargs = {"attention_mask": rows["attention_mask"][:, :end], "use_cache": False}
    if "inputs_embeds" in rows:
        kwargs["inputs_embeds"] = rows["inputs_embeds"][:, :end]
    else:
        kwargs["input_ids"] = rows["input_ids"][:, :end]
    if "position_ids" in rows:
        kwargs["position_ids"] = rows["position_ids"][:, :end]
    if accepts_logits_to_keep(model):
        logits = model(**kwargs, logits_to_keep=end - start).logits
    else:
        logits = model(**kwargs).logits[:, start:end]
    window = {k: v[:, start:end] for k, v in rows.items() if torch.is_tensor(v) and v.dim() == 2 and v.shape[1] >= end}
    return logits, window


@torch.no_grad()
def score_rows(
    model, rows: dict, segments: Sequence[int], chunk_size: int, reduce: str = "sum"
) -> dict[int, torch.Tensor]:
    """Float32 per-row sums (or means) of the log-probs of several segments; no grad.

    One forward per chunk of ``chunk_size`` rows, so each sequence is seen by the model
    exactly once and the (chunk, W, V) logits are the largest tensor alive. Returned on CPU.
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
        logits, window = forward_window(model, chunk, scored)
        logps = token_logprobs(logits, window["input_ids"])
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


def completion_nll(model, rows: dict, first_segment: int) -> torch.Tensor:
    """-mean of log p(token | prefix) over every token of segments >= `first_segment` of the batch (with grad).

    One forward; the LM head runs from the column before the first such token (rows aligned on it).
    """
    scored = rows["segment_ids"] >= first_segment
    logits, window = forward_window(model, rows, scored)
    logps = token_logprobs(logits, window["input_ids"])
    return -masked_mean(logps, window["segment_ids"] >= first_segment)
