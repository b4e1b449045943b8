"""Log-probs of target tokens straight from final hidden states, the LM head applied in chunks.

With a 150k-token vocabulary and a small model the LM head dominates memory: the (B, W, V)
logits of a scoring window (and their float32 log-softmax, and the gradient of both) are
far larger than every activation of the network. Only one number per scored position is
ever used, log p(target), so :class:`_ChunkedHeadLogProbs` computes ``h @ W.T + b`` for N
positions at a time, keeps the float32 log-sum-exp and the target logit, and drops the
chunk. Backward recomputes each chunk's logits from the saved hidden rows (a second
matmul per chunk, the price of never storing (P, V)) and returns the gradients of the
hidden rows, the weight and the bias. :func:`masked_head_logprobs` sends only the scored
positions' hidden rows through the head at all.

Every reduction over the vocabulary is float32 whatever the model dtype, and so is the
weight-gradient accumulator (V x H float32 during backward, twice a bf16 weight's size: the
price of summing the positions' contributions without bf16 rounding). The matmuls run in
the dtype the model's own head multiplied in, which callers read off the head's output in
the same forward (accelerate's autocast ends inside ``model.forward``); without one, the
autocast dtype when autocast is on, else the weight's.
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK_BYTES = 64 * 2**20  # float32 logits of one chunk


def positions_per_chunk(vocab_size: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Positions per chunk so that one chunk's float32 logits take about ``chunk_bytes``."""
    return max(1, chunk_bytes // (4 * vocab_size))


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype the model's own ``nn.Linear`` head would multiply in: autocast's, else the weight's."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return weight.dtype


def _chunk_logits(buf: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    """Float32 (N, V) logits of N hidden rows written into ``buf[:N]`` (``weight`` / ``bias`` already in the
    compute dtype).

    One buffer serves every chunk: on CPU a fresh (N, V) allocation per chunk is a fresh
    mmap whose page faults cost about as much as the matmul itself.
    """
    out = buf[: hidden.shape[0]]
    hidden = hidden.to(weight.dtype)
    if weight.dtype != torch.float32:
        return out.copy_(torch.nn.functional.linear(hidden, weight, bias))
    if bias is None:
        return torch.mm(hidden, weight.T, out=out)
    return torch.addmm(bias, hidden, weight.T, out=out)


def _logsumexp_(logits: torch.Tensor) -> torch.Tensor:
    """Float32 log-sum-exp over the last dim, overwriting ``logits`` (no (N, V) temporary)."""
    top = logits.amax(dim=-1, keepdim=True)
    top = top.masked_fill(top.isinf(), 0.0)  # an all -inf row stays -inf instead of nan
    return logits.sub_(top).exp_().sum(dim=-1).log_().add_(top.squeeze(-1))


class _ChunkedHeadLogProbs(torch.autograd.Function):
    """(log p(target), entropy) per row of ``hidden`` (P, H) under ``softmax(hidden @ weight.T + bias)``.

    Saves the hidden rows, the targets and one float32 log-sum-exp per row: never a (P, V)
    tensor. The entropy (only when asked, else an empty tensor) is a non-differentiable
    by-product for logging: the chunk's logits are already there.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk, with_entropy, dtype):
        dtype = dtype or _compute_dtype(hidden, weight)
        n = hidden.shape[0]
        logps = torch.empty(n, dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(logps)
        entropy = torch.empty_like(logps) if with_entropy else logps.new_empty(0)
        buf = hidden.new_empty((min(chunk, n), weight.shape[0]), dtype=torch.float32)
        with torch.autocast(hidden.device.type, enabled=False):
            w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
            for start in range(0, n, chunk):
                part = slice(start, start + chunk)
                logits = _chunk_logits(buf, hidden[part], w, b)
                picked = logits.gather(-1, targets[part].unsqueeze(-1)).squeeze(-1)
                if with_entropy:  # H = lse - sum_v p_v x_v: needs the logits after the lse
                    lse[part] = torch.logsumexp(logits, dim=-1)
                    entropy[part] = lse[part] - (torch.exp(logits - lse[part].unsqueeze(-1)) * logits).sum(dim=-1)
                else:
                    lse[part] = _logsumexp_(logits)
                logps[part] = picked - lse[part]
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.chunk, ctx.dtype = chunk, dtype
        ctx.mark_non_differentiable(entropy)
        return logps, entropy

    @staticmethod
    def backward(ctx, grad_logps, _grad_entropy):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        grads = HeadGrads(hidden, weight, bias, ctx.needs_input_grad[:3], ctx.dtype)
        buf = hidden.new_empty((min(ctx.chunk, hidden.shape[0]), weight.shape[0]), dtype=torch.float32)
        with torch.autocast(hidden.device.type, enabled=False):
            w, b = grads.weight, None if bias is None else bias.to(ctx.dtype)
            for start in range(0, hidden.shape[0], ctx.chunk):
                part = slice(start, start + ctx.chunk)
                g = grad_logps[part].float().unsqueeze(-1)
                # d/dx_v [x_t - lse(x)] = 1[v = t] - softmax(x)_v, built in place in the logits buffer
                grad_logits = _chunk_logits(buf, hidden[part], w, b).sub_(lse[part].unsqueeze(-1)).exp_().mul_(-g)
                grad_logits.scatter_add_(-1, targets[part].unsqueeze(-1), g)
                grads.add(part, grad_logits)
        return (*grads.result(), None, None, None, None)


class HeadGrads:
    """Gradients of a linear head's inputs (hidden rows, weight, bias), accumulated chunk by chunk from each
    chunk's float32 logit gradient: the weight's and the bias's in float32 (a V x H accumulator), the
    matmuls in the head's compute dtype."""

    def __init__(self, hidden, weight, bias, needs, dtype):
        need_h, need_w, need_b = needs
        self.hidden, self.dtype, self.weight = hidden, dtype, weight.to(dtype)
        self.out_dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        self.grad_h = torch.empty_like(hidden) if need_h else None
        self.grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        self.grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None

    def add(self, part: slice, grad_logits: torch.Tensor) -> None:
        if self.grad_b is not None:
            self.grad_b += grad_logits.sum(dim=0)
        grad_logits = grad_logits.to(self.dtype)
        if self.grad_h is not None:
            self.grad_h[part] = (grad_logits @ self.weight).to(self.hidden.dtype)
        if self.grad_w is not None:
            _accumulate(self.grad_w, grad_logits.T, self.hidden[part].to(self.dtype))

    def result(self):
        _, w_dtype, b_dtype = self.out_dtypes
        return (self.grad_h, None if self.grad_w is None else self.grad_w.to(w_dtype),
                None if self.grad_b is None else self.grad_b.to(b_dtype))


def _accumulate(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``out += a @ b`` into a float32 accumulator (in place when the product is float32 already)."""
    if a.dtype == out.dtype:
        out.addmm_(a, b)
    else:
        out.add_(a @ b)


def chunked_head_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    chunk: int | None = None,
    with_entropy: bool = False,
    compute_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 ``log_softmax(hidden @ weight.T + bias)[targets]`` for (P, H) rows, ``chunk`` rows at a time.

    Returns ``(logps (P,), entropy)``: the entropy of each row's distribution (no grad)
    when ``with_entropy``, else an empty tensor. ``chunk`` defaults to
    :func:`positions_per_chunk` of the vocabulary size; ``compute_dtype`` (the matmuls'
    dtype) to the autocast dtype when autocast is on here, else the weight's.
    """
    chunk = chunk or positions_per_chunk(weight.shape[0])
    return _ChunkedHeadLogProbs.apply(hidden, weight, bias, targets, chunk, with_entropy, compute_dtype)


def masked_head_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    mask: torch.Tensor,
    chunk: int | None = None,
    with_entropy: bool = False,
    compute_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, T) float32 log p(targets) from (B, T, H) hidden states where ``mask`` is set, 0 elsewhere.

    ``hidden[:, t]`` predicts ``targets[:, t]`` (callers shift). The unmasked positions'
    hidden rows are dropped BEFORE the head, so padding and prompt columns cost nothing.
    Returns ``(logps, entropy)``; ``entropy`` is (B, T) (0 where unmasked, no grad) when
    ``with_entropy``, else None. ``compute_dtype``: as in :func:`chunked_head_logprobs`.
    """
    mask = mask.bool()
    logps, entropy = chunked_head_logprobs(hidden[mask], weight, bias, targets[mask], chunk, with_entropy,
                                           compute_dtype)
    zeros = torch.zeros(mask.shape, dtype=torch.float32, device=hidden.device)
    full_entropy = zeros.index_put((mask,), entropy) if with_entropy else None
    return zeros.index_put((mask,), logps), full_entropy
