"""Batched, left-padded, KV-cached generation that samples exactly what the config says.

transformers fills every generation setting left unset (None) from the model's own
`generation_config` (a checkpoint's `generation_config.json`: Qwen2.5-Instruct ships
top_k=20 and repetition_penalty=1.05), then from global defaults (top_k=50). Rollout
log-probs and KLs are computed under the full distribution, so sampling must not be
warped by anything the config does not say. :func:`sampling_config` therefore sets every
logits-processor setting explicitly (neutral unless configured), and :func:`generate`
runs with a neutral `model.generation_config` so that no custom entry can leak in.

Backends (``generation_backend``, see docs/configuration.md): ``"hf"`` is `model.generate`
with a dynamic KV cache; ``"hf_compiled"`` is the same call with a static KV cache and the
decoding forward compiled by `torch.compile` (same processors, same stopping, same output);
``"vllm"`` runs in a colocated vLLM engine (`generation/vllm_backend.py`), an object that the
trainer builds and passes as ``backend``. A ``backend`` left None is the one set by
:func:`use_backend` (the trainers set theirs around generation), else ``"hf"``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from transformers import CompileConfig, GenerationConfig, StoppingCriteria, StoppingCriteriaList

from ..runtime.kv_cache import generation_prompt_cache

GENERATION_BACKENDS = ("hf", "hf_compiled", "vllm")
VLLM_INSTALL = "pip install 'implicit_reasoning[vllm]'"
# hf_compiled: the static cache is sized up to a multiple of this, so that prompts of nearby widths reuse it
# (transformers keeps the largest size seen), and the compiled decoding step is not rebuilt for each width
STATIC_CACHE_BUCKET = 64

_ambient_backend: ContextVar = ContextVar("implicit_reasoning_generation_backend", default="hf")

# Every setting that adds a logits processor, at its neutral value (applied in greedy and sampled modes)
NEUTRAL_PROCESSORS = dict(
    repetition_penalty=1.0,
    encoder_repetition_penalty=1.0,
    no_repeat_ngram_size=0,
    encoder_no_repeat_ngram_size=0,
    length_penalty=1.0,
    num_beams=1,
    num_beam_groups=1,
    diversity_penalty=0.0,
    num_return_sequences=1,
    renormalize_logits=False,
    remove_invalid_values=False,
)
# ... and every warper (sampling only). top_k=0 is "off"; None would let transformers fill in its default 50.
NEUTRAL_WARPERS = dict(temperature=1.0, top_k=0, top_p=1.0, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0)


def left_pad(rows: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into (input_ids, attention_mask)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.as_tensor(list(r), dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids, mask


class StopOnSequences(StoppingCriteria):
    """Marks a row done once its generated tail ends with one of the token sequences."""

    def __init__(self, stop_seqs: Sequence[Sequence[int]], prompt_width: int):
        self.stop_seqs = [torch.as_tensor(list(s), dtype=torch.long) for s in stop_seqs if len(s) > 0]
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        generated = input_ids.shape[1] - self.prompt_width
        for seq in self.stop_seqs:
            if len(seq) <= generated:
                done |= (input_ids[:, -len(seq) :] == seq.to(input_ids.device)).all(dim=1)
        return done


def sampling_config(
    max_new_tokens: int,
    pad_token_id: int,
    eos_token_ids: Sequence[int] | None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    greedy: bool = False,
    min_new_tokens: int | None = None,
) -> GenerationConfig:
    """A `GenerationConfig` that samples from softmax(logits / temperature) with only the given top-p / top-k.

    ``greedy`` takes the argmax. Nothing else (no penalty, no n-gram ban, no min-p) is applied,
    whatever the model's own generation config holds.
    """
    kwargs = dict(NEUTRAL_PROCESSORS)
    if not greedy:
        kwargs.update(NEUTRAL_WARPERS, temperature=float(temperature), top_p=float(top_p), top_k=int(top_k))
    return GenerationConfig(
        **kwargs,
        do_sample=not greedy,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        pad_token_id=pad_token_id,
        eos_token_id=list(eos_token_ids) if eos_token_ids else None,
        use_cache=True,
    )


def _transformers_model(model):
    """The transformers model whose `generate` runs (peft delegates to its base model)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextmanager
def neutral_generation_config(model):
    """Temporarily give the model an empty `generation_config`, so nothing of its own fills our unset fields."""
    target = _transformers_model(model)
    saved = target.generation_config
    target.generation_config = GenerationConfig()
    try:
        yield
    finally:
        target.generation_config = saved


def check_backend(backend: str) -> None:
    """A `ValueError` naming `generation_backend` and its choices unless `backend` is one of them."""
    if backend not in GENERATION_BACKENDS:
        raise ValueError(f"generation_backend={backend!r}: must be one of {GENERATION_BACKENDS}")


@contextmanager
def use_backend(backend):
    """Within the block, `generate(..., backend=None)` runs on `backend` (a name, or an engine object)."""
    if isinstance(backend, str):
        check_backend(backend)
    token = _ambient_backend.set(backend)
    try:
        yield
    finally:
        _ambient_backend.reset(token)


def current_backend():
    """The backend `generate` uses when given none (set by :func:`use_backend`; default "hf")."""
    return _ambient_backend.get()


def _compile_config(device: torch.device) -> CompileConfig:
    # CUDA: CUDA graphs ("reduce-overhead"); elsewhere plain inductor. dynamic=True: one graph for every batch
    # size and cache length (>= 2: torch specializes size 1, so `generate` never sends a 1-row batch)
    config = CompileConfig(fullgraph=False, dynamic=True, mode="reduce-overhead" if device.type == "cuda" else "default")
    config._compile_all_devices = True  # transformers only auto-compiles on accelerators otherwise
    return config


def compiled_generation_config(generation_config: GenerationConfig, prompt_width: int,
                               device: torch.device) -> GenerationConfig:
    """`generation_config` for the "hf_compiled" backend: the same settings, a static KV cache (sized up to a
    multiple of STATIC_CACHE_BUCKET) and a compiled decoding forward."""
    config = copy.deepcopy(generation_config)
    config.cache_implementation = "static"
    needed = prompt_width + generation_config.max_new_tokens
    config.max_cache_len = -(-needed // STATIC_CACHE_BUCKET) * STATIC_CACHE_BUCKET
    config.compile_config = _compile_config(device)
    return config


@torch.no_grad()
def generate(
    model,
    prompts: Sequence[Sequence[int]],
    generation_config: GenerationConfig,
    batch_size: int,
    stop_seqs: Sequence[Sequence[int]] = (),
    progress: str | None = None,
    backend=None,
    shared_prefill: bool = False,
) -> torch.Tensor:
    """Generate for token-list prompts in chunks of `batch_size` rows, in eval mode.

    `progress` (a label) shows a progress bar over batches. Returns the generated tokens
    only, (len(prompts), max_new_tokens), right-padded with the pad id (rows that stopped
    early are padded after their stop). `backend`: "hf", "hf_compiled", an engine object with
    this function's `generate(model, prompts, generation_config, batch_size, stop_seqs, progress)`
    (the trainers' vLLM engine), or None for :func:`current_backend`. `shared_prefill` ("hf"):
    a prompt that occurs several times in a chunk is prefilled once and its KV cache copied to
    its rows (`runtime/kv_cache.py`); the same draws, the same samples up to float rounding.
    """
    backend = current_backend() if backend is None else backend
    if not isinstance(backend, str):
        return backend.generate(model, prompts, generation_config, batch_size, stop_seqs=stop_seqs, progress=progress)
    check_backend(backend)
    if backend == "vllm":
        raise ValueError(
            "generation_backend='vllm' generates through the engine a trainer builds (BaseTrainer.generation_engine()); "
            "pass that object as `backend`, not the name"
        )
    width = generation_config.max_new_tokens
    pad = generation_config.pad_token_id
    device = next(model.parameters()).device
    out = torch.full((len(prompts), width), pad, dtype=torch.long)
    was_training = model.training
    model.eval()
    starts = range(0, len(prompts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=progress, unit="batch")
    try:
        with neutral_generation_config(model):
            for start in starts:
                chunk = list(prompts[start : start + batch_size])
                if backend == "hf_compiled" and len(chunk) == 1:
                    chunk = chunk * 2  # a 1-row batch would compile a graph of its own; the copy is dropped below
                ids, mask = left_pad(chunk, pad)
                criteria = StoppingCriteriaList([StopOnSequences(stop_seqs, ids.shape[1])]) if stop_seqs else None
                ids, mask = ids.to(device), mask.to(device)
                config, cache = generation_config, {}
                if backend == "hf_compiled":
                    config = compiled_generation_config(generation_config, ids.shape[1], device)
                elif shared_prefill:
                    cache = generation_prompt_cache(model, ids, mask)
                seqs = model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                      stopping_criteria=criteria, **cache)
                new = seqs[: min(batch_size, len(prompts) - start), ids.shape[1] :].cpu()
                out[start : start + len(new), : new.shape[1]] = new
    finally:
        model.train(was_training)
    return out
