"""Counting a model's forward passes: how many, over how many tokens, with or without grad, inside `generate` or not.

`ForwardCounter.attach(model, "policy")` registers a forward pre-hook (with kwargs) on the model's
backbone (the innermost transformers model, e.g. `LlamaModel`: every causal-LM forward runs it
once, whatever wraps or patches the LM head) and wraps the model's `generate` on the instance.
Each backbone call is recorded under (model name, phase, grad), where phase is

* ``"generate"``: a call made inside `generate` (its prefill and every decode step), or the
  shared prompt prefill our generation runs just before it (`runtime/kv_cache.py`), and
* ``"score"``: any other call (a scoring pass, a KV-cache continuation, the pass with grad),

with its rows, the positions it runs (``tokens``: input_ids numel, padding included) and the real
ones (``real_tokens``: the attention mask over those positions). `generate` calls and the tokens
they produce are counted apart (``generate_calls``, ``generated_tokens``) and timed; the time of
the shared prompt prefill is added to the generation time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch

from ..runtime.kv_cache import in_generation_prefill

PHASES = ("generate", "score")


def backbone(model):
    """The innermost transformers model of a causal LM (peft and `base_model_prefix` unwrapped)."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    inner = getattr(model, "base_model", model)
    return inner if isinstance(inner, torch.nn.Module) else model


def _positions(args, kwargs) -> tuple[int, int, torch.Tensor | None]:
    """(rows, sequence positions, attention mask) of a backbone call."""
    ids = kwargs.get("input_ids", args[0] if args else None)
    if ids is None:
        embeds = kwargs.get("inputs_embeds")
        rows, width = (embeds.shape[0], embeds.shape[1]) if embeds is not None else (0, 0)
    else:
        rows, width = ids.shape[0], ids.shape[-1] if ids.dim() > 1 else 1
    mask = kwargs.get("attention_mask")
    return rows, width, mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None


def synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class ForwardCounter:
    """Counts backbone forwards and `generate` calls of the models attached to it (see the module docstring)."""

    def __init__(self):
        self.records: dict[tuple[str, str, bool], dict[str, int]] = defaultdict(
            lambda: {"calls": 0, "rows": 0, "tokens": 0, "real_tokens": 0}
        )
        self.generate_calls: dict[str, int] = defaultdict(int)
        self.generated_tokens: dict[str, int] = defaultdict(int)
        self.generate_seconds: dict[str, float] = defaultdict(float)
        self.enabled = True
        self._in_generate = 0
        self._prefill_start: float | None = None
        self._handles: list = []
        self._patched: list[tuple[object, bool, object]] = []

    # ------------------------------------------------------------------ hooks
    def attach(self, model, name: str) -> ForwardCounter:
        """Count `model`'s backbone forwards and `generate` calls under `name` (e.g. "policy", "reference")."""
        self._handles.append(backbone(model).register_forward_pre_hook(self._hook(name), with_kwargs=True))
        self._handles.append(backbone(model).register_forward_hook(self._prefill_timer(name)))
        if hasattr(model, "generate"):
            self._wrap_generate(model, name)
        return self

    def _hook(self, name: str):
        def pre_hook(module, args, kwargs):
            if not self.enabled:
                return
            rows, width, mask = _positions(args, kwargs)
            real = int(mask[:, -width:].sum()) if mask is not None and width else rows * width
            prefill = in_generation_prefill() and not self._in_generate
            if prefill:  # generation's shared prompt prefill, run before `generate`: timed as generation
                synchronize()
                self._prefill_start = time.perf_counter()
            phase = "generate" if self._in_generate or prefill else "score"
            record = self.records[(name, phase, torch.is_grad_enabled())]
            record["calls"] += 1
            record["rows"] += rows
            record["tokens"] += rows * width
            record["real_tokens"] += real
            return

        return pre_hook

    def _prefill_timer(self, name: str):
        def hook(module, args, output):
            if self._prefill_start is not None:
                synchronize()
                if self.enabled:
                    self.generate_seconds[name] += time.perf_counter() - self._prefill_start
                self._prefill_start = None

        return hook

    def _wrap_generate(self, model, name: str) -> None:
        had_own = "generate" in vars(model)
        original = model.generate

        def generate(*args, **kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            width = ids.shape[-1] if isinstance(ids, torch.Tensor) else 0
            synchronize()
            start = time.perf_counter()
            self._in_generate += 1
            try:
                out = original(*args, **kwargs)
            finally:
                self._in_generate -= 1
            synchronize()
            if self.enabled:
                self.generate_seconds[name] += time.perf_counter() - start
                self.generate_calls[name] += 1
                sequences = out if isinstance(out, torch.Tensor) else getattr(out, "sequences", None)
                if sequences is not None:
                    self.generated_tokens[name] += sequences.shape[0] * max(sequences.shape[-1] - width, 0)
            return out

        model.generate = generate
        self._patched.append((model, had_own, original))

    def detach(self) -> None:
        """Remove every hook and restore every wrapped `generate`."""
        for handle in self._handles:
            handle.remove()
        for model, had_own, original in reversed(self._patched):
            if had_own:
                model.generate = original
            else:
                del model.generate
        self._handles, self._patched = [], []

    @contextmanager
    def paused(self):
        """Calls inside this block are not counted."""
        enabled, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = enabled

    # ---------------------------------------------------------------- results
    def reset(self) -> None:
        self.records.clear()
        self.generate_calls.clear()
        self.generated_tokens.clear()
        self.generate_seconds.clear()

    def count(self, name: str, phase: str | None = None, grad: bool | None = None, key: str = "calls") -> int:
        """Sum of `key` over the records of `name` matching `phase` / `grad` (None = any)."""
        return sum(
            r[key]
            for (n, p, g), r in self.records.items()
            if n == name and (phase is None or p == phase) and (grad is None or g == grad)
        )

    def summary(self, samples: int = 1, updates: int = 1) -> list[dict]:
        """One row per (model, phase, grad): totals, calls per update, and per sample (of `samples` in all):
        ``passes_per_sample`` (rows run: a sample's row in a batched call is one pass of that sample) and tokens."""
        rows = []
        for (name, phase, grad), r in sorted(self.records.items()):
            rows.append({"model": name, "phase": phase, "grad": grad, **r, "calls_per_update": r["calls"] / updates,
                         "passes_per_sample": r["rows"] / samples, "tokens_per_sample": r["tokens"] / samples,
                         "real_tokens_per_sample": r["real_tokens"] / samples})
        for name, calls in sorted(self.generate_calls.items()):
            rows.append({"model": name, "phase": "generate_calls", "grad": False, "calls": calls,
                         "calls_per_update": calls / updates, "generated_tokens": self.generated_tokens[name],
                         "generated_tokens_per_sample": self.generated_tokens[name] / samples})
        return rows
