"""Full-vocabulary terms with grad (KL to a reference, entropy) without (B, W, V) logits.

A KL penalty or an entropy bonus needs every logit of a scored position, so the chunked
log-prob head (:mod:`implicit_reasoning.scoring.lm_head`) alone cannot serve it. Here the
scored positions' final hidden states go through the head N at a time in a custom autograd
Function: each chunk's float32 log p, p and the reference's log q live in three buffers
reused by every chunk, the backward recomputes them (a second matmul per chunk and head),
so the peak is three chunks' worth, not the window's several (B, W, V) copies. The
reference's hidden states are read the same way (one no-grad forward with a one-column
``logits_to_keep``). Reductions, and the weight-gradient accumulator, are float32.

Per scored position t (the hidden state at t-1 predicts token t, as in the window
convention of :mod:`implicit_reasoning.scoring.window`):

  log p(x_t),   H(p) = -sum_v p_v log p_v,   KL(p || q) = sum_v p_v (log p_v - log q_v)

with p the policy's and q the reference's softmax, all reductions in float32.
"""

from __future__ import annotations

import torch

from .lm_head import HeadGrads, _chunk_logits, _compute_dtype, positions_per_chunk
from .window import chunkable_head, window_hidden


def _log_softmax_and_softmax(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Float32 log-softmax of ``logits`` IN PLACE, and softmax into ``probs``; returns the log-sum-exp."""
    top = logits.amax(dim=-1, keepdim=True)
    total = torch.sub(logits, top, out=probs).exp_().sum(dim=-1, keepdim=True)
    probs.div_(total)
    lse = total.log_().add_(top)
    logits.sub_(lse)
    return lse.squeeze(-1)


class _ChunkedHeadTerms(torch.autograd.Function):
    """(log p(target), H(p), KL(p || q)) per row of ``hidden`` (P, H), p = softmax(hidden W^T + b), q the
    same of ``ref_hidden`` through the reference head (a constant).

    Three (chunk, V) float32 buffers serve every chunk (logits -> log p, p, log q); nothing of size
    (P, V) is saved: backward recomputes each chunk. With upstream gradients (g_l, g_h, g_k),
    d/dx_v = p_v [(g_k - g_h) log p_v - g_k log q_v - g_l - g_h H - g_k KL] + g_l 1[v = t].
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, ref_hidden, ref_weight, ref_bias, chunk, dtype, ref_dtype):
        n, with_ref = hidden.shape[0], ref_hidden is not None
        out = torch.zeros(3, n, dtype=torch.float32, device=hidden.device)
        bufs = [hidden.new_empty((min(chunk, n), weight.shape[0]), dtype=torch.float32) for _ in range(3)]
        with torch.autocast(hidden.device.type, enabled=False):
            for part, logp, p, logq in _chunks(_cast_operands(hidden, weight, bias, ref_hidden, ref_weight, ref_bias,
                                                        chunk, dtype, ref_dtype), bufs):
                out[0, part] = logp.gather(-1, targets[part].unsqueeze(-1)).squeeze(-1)
                out[1, part] = -torch.linalg.vecdot(p, logp)
                if with_ref:  # sum_v p_v (log p_v - log q_v): the difference first (no cancellation of two sums)
                    out[2, part] = -torch.linalg.vecdot(p, logq.sub_(logp))
        ctx.save_for_backward(hidden, weight, bias, targets, ref_hidden, ref_weight, ref_bias, out)
        ctx.chunk, ctx.dtype, ctx.ref_dtype = chunk, dtype, ref_dtype
        return out[0], out[1], out[2]

    @staticmethod
    def backward(ctx, g_l, g_h, g_k):
        hidden, weight, bias, targets, ref_hidden, ref_weight, ref_bias, out = ctx.saved_tensors
        grads = HeadGrads(hidden, weight, bias, ctx.needs_input_grad[:3], ctx.dtype)
        if ref_hidden is None:  # no reference: the KL output is the constant 0, it sends back nothing
            g_k = torch.zeros_like(g_k)
        g_l, g_h, g_k = (g.float().unsqueeze(-1) for g in (g_l, g_h, g_k))
        bufs = [hidden.new_empty((min(ctx.chunk, hidden.shape[0]), weight.shape[0]), dtype=torch.float32)
                for _ in range(3)]
        ops = _cast_operands(hidden, weight, bias, ref_hidden, ref_weight, ref_bias, ctx.chunk, ctx.dtype, ctx.ref_dtype)
        ops["weight"] = grads.weight  # one cast copy (when the compute dtype differs), not two
        with torch.autocast(hidden.device.type, enabled=False):
            for part, logp, p, logq in _chunks(ops, bufs):
                grad = logp.mul_(g_k[part] - g_h[part])  # the bracket, built in the log p buffer
                if ref_hidden is not None:
                    grad.sub_(logq.mul_(g_k[part]))
                grad.sub_(g_l[part] + g_h[part] * out[1, part, None] + g_k[part] * out[2, part, None]).mul_(p)
                grad.scatter_add_(-1, targets[part].unsqueeze(-1), g_l[part])
                grads.add(part, grad)
        return (*grads.result(), None, None, None, None, None, None, None)


def _cast_operands(hidden, weight, bias, ref_hidden, ref_weight, ref_bias, chunk, dtype, ref_dtype) -> dict:
    """The operands of :func:`_chunks`, cast once to the matmuls' dtypes."""
    cast = {"hidden": hidden, "weight": weight.to(dtype), "bias": None if bias is None else bias.to(dtype),
            "chunk": chunk, "ref_hidden": ref_hidden}
    if ref_hidden is not None:
        cast["ref_weight"] = ref_weight.to(ref_dtype)
        cast["ref_bias"] = None if ref_bias is None else ref_bias.to(ref_dtype)
    return cast


def _chunks(ops: dict, bufs: list[torch.Tensor]):
    """Per chunk of rows: (slice, log p, p, log q or None), views of the three reused buffers (log q first,
    with the p buffer as its scratch)."""
    hidden, ref_hidden = ops["hidden"], ops["ref_hidden"]
    for start in range(0, hidden.shape[0], ops["chunk"]):
        part = slice(start, start + ops["chunk"])
        logq = None
        if ref_hidden is not None:
            logq = _chunk_logits(bufs[2], ref_hidden[part], ops["ref_weight"], ops["ref_bias"])
            _log_softmax_and_softmax(logq, bufs[1][: logq.shape[0]])
        logp = _chunk_logits(bufs[0], hidden[part], ops["weight"], ops["bias"])
        p = bufs[1][: logp.shape[0]]
        _log_softmax_and_softmax(logp, p)
        yield part, logp, p, logq


def chunked_head_terms(hidden, head, targets, ref_hidden=None, ref_head=None, dtype=None, ref_dtype=None,
                       chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P,) float32 log p(targets), entropy and KL(p || q) (0 without ``ref_hidden``) for (P, H) rows.

    Differentiable in ``hidden`` and the head's parameters; the reference is constant. ``chunk``
    rows at a time (default: about 64 MiB of float32 logits per buffer).
    """
    dtype = dtype or _compute_dtype(hidden, head.weight)
    ref_weight = ref_bias = None
    if ref_hidden is not None:
        ref_weight, ref_bias = ref_head.weight.detach(), None if ref_head.bias is None else ref_head.bias.detach()
        ref_dtype, ref_hidden = ref_dtype or _compute_dtype(ref_hidden, ref_weight), ref_hidden.detach()
    chunk = chunk or positions_per_chunk(head.weight.shape[0])
    return _ChunkedHeadTerms.apply(hidden, head.weight, head.bias, targets, ref_hidden, ref_weight, ref_bias,
                                   chunk, dtype, ref_dtype)


def window_head_terms(model, reference, rows: dict, scored: torch.Tensor, chunk: int | None = None,
                      shared_prefill: bool = False, reference_shared_prefill: bool = False):
    """:func:`~implicit_reasoning.scoring.window.window_logprobs`' (B, W) log-probs plus (B, W) entropy and
    KL(policy || ``reference``) at the scored tokens (0 elsewhere and in column 0), and the window.

    ``reference`` (None: no KL) is a model, or a context manager factory yielding one (the
    trainer's ``reference_model``), run without grad over the same rows. Returns None when
    either head is not exactly chunkable (the caller then takes the full-logits path). ``chunk``: as in
    :func:`chunked_head_terms`. ``shared_prefill`` / ``reference_shared_prefill``: the policy's (with grad) /
    the reference's forward runs each distinct prompt once (see ``window.window_hidden``).
    """
    head = chunkable_head(model)
    if head is None:  # a LoRA'd / soft-capped / ZeRO-3 head: the full-logits path, at once
        return None
    ref = ref_head = None
    if reference is not None:  # first: a reference that cannot be chunked must not cost a policy forward
        with torch.no_grad(), reference() as ref_model:
            ref_head = chunkable_head(ref_model)
            ref = window_hidden(ref_model, rows, scored, ref_head, reference_shared_prefill) \
                if ref_head is not None else None
        if ref is None:
            return None
    policy = window_hidden(model, rows, scored, head, shared_prefill)
    if policy is None:
        return None
    hidden, dtype, window, mask = policy
    ref_hidden, ref_dtype = (ref[0][mask], ref[1]) if ref is not None else (None, None)
    terms = chunked_head_terms(hidden[mask], head, window["input_ids"][:, 1:][mask], ref_hidden,
                               ref_head, dtype, ref_dtype, chunk)
    full = []
    for values in terms:
        grid = torch.zeros(window["input_ids"].shape, dtype=torch.float32, device=hidden.device)
        full.append(grid.index_put((torch.nn.functional.pad(mask, (1, 0)),), values))
    logps, entropy, kl = full
    return logps, entropy, kl, window
