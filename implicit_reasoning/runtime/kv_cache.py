"""KV-cache plumbing shared by generation and scoring.

* The cache's name: transformers 5.25 renamed a model's ``past_key_values=`` argument and its
  outputs' ``.past_key_values`` to ``cache`` (the old name warns, and goes in 5.40); older
  releases know only the old one. :func:`cache_argument` and :func:`output_cache` pick whichever
  the installed model has, so no call of ours goes through a deprecated name.
* One prefill per distinct prompt: rollouts sample K completions of each prompt, and `generate`
  on repeated prompts would run each prompt K times. :func:`generation_prompt_cache` runs each
  distinct prompt once and copies its keys and values to its K rows before `generate` samples
  (which then runs only the prompts' last column, for every row, and samples as it always does);
  :func:`prefix_cached_kwargs` does the same for a no-grad scoring pass over [x; ...] rows.
  The results equal the repeated-prompt ones up to float rounding (the same arithmetic, batched
  differently); the random draws are the same calls in the same order.
"""

from __future__ import annotations

import inspect
import warnings
from contextvars import ContextVar

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .models import innermost_model

NEW_NAME, OLD_NAME = "cache", "past_key_values"


def cache_argument(model) -> str:
    """The keyword under which ``model`` (the transformers model under any peft / DDP wrapper) takes a KV cache."""
    return NEW_NAME if NEW_NAME in inspect.signature(innermost_model(model).forward).parameters else OLD_NAME


def output_cache(output):
    """The KV cache of a model's or `generate`'s output, under the name the installed transformers gives it."""
    fields = getattr(output, "__dataclass_fields__", None) or {}
    return getattr(output, NEW_NAME) if NEW_NAME in fields else getattr(output, OLD_NAME)


# --------------------------------------------------------------------------- one prefill per distinct prefix
def distinct_rows(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, inverse) of the rows of a 2-D tensor: ``first`` indexes each distinct row's first occurrence, in
    order; ``inverse[i]`` is the position in ``first`` of row i's value."""
    seen: dict[tuple, int] = {}
    first, inverse = [], []
    for i, row in enumerate(key.tolist()):
        index = seen.setdefault(tuple(row), len(seen))
        if index == len(first):
            first.append(i)
        inverse.append(index)
    return torch.tensor(first, dtype=torch.long), torch.tensor(inverse, dtype=torch.long)


def expansion_problem(cache) -> str | None:
    """Why ``cache`` cannot be copied row-wise to other rows and then continued exactly; None when it can.

    Only a transformers `Cache` made of plain full-attention `DynamicLayer`s is expanded: a sliding-window,
    quantized, static or linear-attention layer keeps or transforms its entries in ways this does not follow.
    """
    layers = getattr(cache, "layers", None)
    if not isinstance(cache, Cache) or layers is None:
        return f"the model returned a {type(cache).__name__}, not a transformers Cache with layers"
    odd = sorted({type(layer).__name__ for layer in layers if type(layer) is not DynamicLayer})
    return f"its cache has {', '.join(odd)} layers (only DynamicLayer is expanded)" if odd else None


# A chunk shares its prefixes only when that saves at least this many real prefix tokens: below it the extra,
# short forward costs more than it saves on small models (measured: `tiny`, 14-token prompts, K=4, 16 rows:
# 156 tokens saved, the update 4 % slower shared; docs/performance.md)
MIN_SAVED_TOKENS = 256
_generation_prefill: ContextVar[bool] = ContextVar("implicit_reasoning_generation_prefill", default=False)
_UNEXPANDABLE: dict[type, str] = {}  # model classes whose cache cannot be expanded: warned once, then not tried


def shared_prefix_cache(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, width: int,
                        position_ids: torch.Tensor | None = None):
    """The KV cache of columns [0, ``width``) of every row, from ONE forward over each distinct row.

    Rows whose ids (where the mask is set) and mask agree on those columns have the same keys and values
    there, so each distinct prefix is run once and its cache rows are copied to the rows that share it
    (``Cache.batch_select_indices``, what `generate` uses to expand a prompt to its samples). Returns None
    when sharing saves fewer than :data:`MIN_SAVED_TOKENS` real tokens (every prefix distinct, short ones,
    ``width`` 0) or when the model's cache cannot be expanded (:func:`expansion_problem`; warned once per
    model class); the caller then runs every row in full.
    With grad enabled the copies are differentiable (an index into the prefix's keys and values), so a loss
    over the rows sends each prefix the sum of its rows' gradients, as the rows' own prefixes would get.
    """
    inner = innermost_model(model)
    if width < 1 or type(inner) in _UNEXPANDABLE:
        return None
    ids, mask = input_ids[:, :width], attention_mask[:, :width]
    first, inverse = distinct_rows(torch.cat([torch.where(mask.bool(), ids, -1), mask], dim=1))
    if int(mask.sum()) - int(mask[first.to(mask.device)].sum()) < max(MIN_SAVED_TOKENS, 1):
        return None
    device = ids.device
    first = first.to(device)
    kwargs = {"input_ids": ids[first], "attention_mask": mask[first], "use_cache": True}
    if position_ids is not None:
        kwargs["position_ids"] = position_ids[first, :width]
    if "logits_to_keep" in inspect.signature(inner.forward).parameters:
        kwargs["logits_to_keep"] = 1  # the prefix's logits are never read
    cache = output_cache(model(**kwargs))
    if cache is None:  # this call made none (e.g. training under gradient checkpointing): run its rows in full
        return None
    problem = expansion_problem(cache)
    if problem is not None:
        _UNEXPANDABLE[type(inner)] = problem
        warnings.warn(f"{type(inner).__name__}: each prompt is prefilled once per sample, not once: {problem}",
                      stacklevel=2)
        return None
    cache.batch_select_indices(inverse.to(device))
    return cache


def generation_prompt_cache(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    """``{cache keyword: cache}`` for `model.generate` on left-padded prompts that repeat, or {} (nothing shared).

    The cache holds every column but the last: `generate` needs one uncached column, which it runs for every
    row and whose logits give the first sampled token, exactly as without the cache. Position ids are the ones
    `generate` derives from the mask (cumulative count of real tokens), for models whose forward takes them.
    """
    positions = None
    if "position_ids" in inspect.signature(innermost_model(model).forward).parameters:
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    token = _generation_prefill.set(True)
    try:
        cache = shared_prefix_cache(model, input_ids, attention_mask, input_ids.shape[1] - 1, positions)
    finally:
        _generation_prefill.reset(token)
    return {} if cache is None else {cache_argument(model): cache}


def in_generation_prefill() -> bool:
    """True inside :func:`generation_prompt_cache`'s forward: generation's prompt prefill, run before `generate`."""
    return _generation_prefill.get()


def prefix_cached_kwargs(model, kwargs: dict, start: int, segment_ids: torch.Tensor | None) -> tuple[dict, int]:
    """Forward ``kwargs`` over columns [0, T) rewritten to run columns [c, T) on a shared cache of [0, c).

    ``start`` is the first column whose output is needed; c = min(start, the first column where any row is past
    its first segment, its prompt), so the cached columns are prompt (or padding) in every row. Returns
    (kwargs, c), or the kwargs unchanged and 0 when nothing is shared (see :func:`shared_prefix_cache`).
    """
    if "input_ids" not in kwargs:  # embeddings: rows cannot be compared by their tokens
        return kwargs, 0
    width = start
    if segment_ids is not None:
        past_prompt = (segment_ids[:, :start] > 1).any(dim=0).nonzero()
        width = int(past_prompt[0]) if len(past_prompt) else start
    cache = shared_prefix_cache(model, kwargs["input_ids"], kwargs["attention_mask"], width,
                                kwargs.get("position_ids"))
    if cache is None:
        return kwargs, 0
    cut = {k: v if k == "attention_mask" or not torch.is_tensor(v) else v[:, width:] for k, v in kwargs.items()}
    return {**cut, "use_cache": True, cache_argument(model): cache}, width
