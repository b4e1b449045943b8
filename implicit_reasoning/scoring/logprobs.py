"""Log-probs and reducers, in float32 from logits of any dtype.

:func:`token_logprobs` gathers log p(token) in float32 without materialising float32 (B, T, V) tensors,
:func:`segment_reduce` sums / averages them per row in float32, and :func:`token_normalizer` turns a
micro-batch's summed token loss into its share of the update's token mean.
"""

from __future__ import annotations

import torch


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


def token_normalizer(token_counts: list[int], processes: int, accumulation_steps: int) -> float:
    """What each micro-batch's summed token loss is divided by, so that the update is the token mean over ALL its
    micro-batches and processes: Trainer divides each micro-batch's loss by `accumulation_steps` and DDP averages
    the processes' gradients, so sum / (update tokens / (processes x accumulation_steps)) adds up to
    (update's token sum) / (update tokens), however the tokens fall on micro-batches and processes."""
    return max(sum(token_counts), 1) / (processes * accumulation_steps)
