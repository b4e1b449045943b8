"""``generation_backend="vllm"``: generation in a vLLM engine colocated with training (an optional extra).

Modelled on TRL's ``vllm_mode="colocate"`` (``trl/generation/vllm_generation.py``): every process
builds one `vllm.LLM` from the policy's checkpoint (``name_or_path``, or a copy saved under
``output_dir`` when the policy was built in memory), sharing the GPU with training
(``vllm_gpu_memory_utilization``). Before generating, the policy's current weights are pushed
into the engine whenever the optimizer has stepped since the last push (the version is the
trainer's ``state.global_step``; `VLLMGenerator.mark_stale` forces a push after weights change
in place without a step). LoRA adapters are pushed merged (base + delta, computed: the model is
left untouched).

Sampling is exactly the `GenerationConfig` that `generation.sampling.sampling_config` built:
:func:`sampling_params_kwargs` maps temperature / top-p / top-k (0 = off -> -1), greedy
(temperature 0), ``max_new_tokens``, ``min_new_tokens`` and the end-of-text ids
(``stop_token_ids``, with ``ignore_eos`` so that the model's own eos cannot end a row that
our config would continue), ``n=1`` (rows are already repeated) and a seed per row drawn from
torch's RNG (so ``torch.manual_seed`` reproduces a run; one seed for all rows would give
repeated prompts identical samples). Nothing of the model's own ``generation_config.json``
applies (``generation_config="vllm"``). Stop *sequences* (several tokens) have no vLLM
equivalent: rows are cut after their first complete stop sequence, as
`generation.sampling.StopOnSequences` stops them. The result is `generate`'s: (N, max_new_tokens),
right-padded with the pad id.

vLLM is imported only when this backend is selected; without it the error says how to install it.
None of this runs without vLLM and a CUDA GPU: the tests cover the parameter mapping, the stop
handling, the missing-package error and the push-on-new-version logic with a fake engine.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch

from .sampling import VLLM_INSTALL, _transformers_model, generate

# settings that add a processor vLLM would need its own parameter for: they must be at their neutral value
NEUTRAL_REQUIRED = dict(repetition_penalty=1.0, encoder_repetition_penalty=1.0, no_repeat_ngram_size=0,
                        encoder_no_repeat_ngram_size=0, num_beams=1, typical_p=1.0, epsilon_cutoff=0.0,
                        eta_cutoff=0.0, num_return_sequences=1)


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def require_vllm():
    """The `vllm` module, or an ImportError that says how to get it."""
    try:
        return importlib.import_module("vllm")
    except ImportError as error:
        raise ImportError(
            f"generation_backend='vllm' needs vLLM (CUDA only), which is not installed: {VLLM_INSTALL} "
            "(or choose generation_backend='hf' / 'hf_compiled')"
        ) from error


def sampling_params_kwargs(generation_config, seed: int | None = None) -> dict:
    """`vllm.SamplingParams` keyword arguments for one row sampled as `generation_config` says (a pure function)."""
    for name, neutral in NEUTRAL_REQUIRED.items():
        value = getattr(generation_config, name, None)
        if value is not None and value != neutral:
            raise ValueError(f"generation_backend='vllm': {name}={value!r} is not supported (only {neutral!r})")
    if getattr(generation_config, "min_p", None):
        raise ValueError(f"generation_backend='vllm': min_p={generation_config.min_p!r} is not supported")
    greedy = not generation_config.do_sample
    eos = generation_config.eos_token_id
    eos = [] if eos is None else [int(eos)] if isinstance(eos, int) else [int(i) for i in eos]
    top_k = generation_config.top_k
    return dict(
        n=1,
        temperature=0.0 if greedy else float(generation_config.temperature or 1.0),
        top_p=1.0 if greedy or generation_config.top_p is None else float(generation_config.top_p),
        top_k=-1 if greedy or not top_k else int(top_k),
        min_p=0.0,
        repetition_penalty=1.0,
        presence_penalty=0.0,
        frequency_penalty=0.0,
        max_tokens=int(generation_config.max_new_tokens),
        min_tokens=int(generation_config.min_new_tokens or 0),
        stop_token_ids=eos,
        ignore_eos=True,  # only our end-of-text ids (stop_token_ids) end a row, not the tokenizer's eos
        seed=seed,
        detokenize=False,
        skip_special_tokens=False,
    )


def first_stop_end(row: Sequence[int], stop_seqs: Sequence[Sequence[int]]) -> int | None:
    """Length of `row` up to and including the end of its first complete stop sequence (None: no stop)."""
    seqs = [list(s) for s in stop_seqs if len(s) > 0]
    for end in range(1, len(row) + 1):
        for seq in seqs:
            if len(seq) <= end and list(row[end - len(seq) : end]) == seq:
                return end
    return None


def pad_rows(rows: Sequence[Sequence[int]], width: int, pad_token_id: int,
             stop_seqs: Sequence[Sequence[int]] = ()) -> torch.Tensor:
    """(N, width) right-padded generated tokens, each row cut after its first stop sequence."""
    out = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    for i, row in enumerate(rows):
        row = list(row)[:width]
        end = first_stop_end(row, stop_seqs) if stop_seqs else None
        row = row[: end if end is not None else len(row)]
        if row:
            out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def named_weights_for_vllm(model) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every weight under the names vLLM loads (TRL's mapping), LoRA adapters merged in.

    Merged tensors are computed (base + delta), not merged into the model and unmerged after as
    TRL does: that round trip changes the frozen base weights by rounding at every push.
    """
    if not (hasattr(model, "peft_config") and hasattr(model, "merge_adapter")):
        for name, param in model.named_parameters():
            yield name.replace("_checkpoint_wrapped_module.", ""), param.data
        return
    deltas = {}
    for module_name, module in model.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer") and not module.merged:
            active = [a for a in module.active_adapters if a in module.lora_A]
            if active:
                deltas[f"{module_name}.base_layer.weight"] = sum(module.get_delta_weight(a) for a in active)
    for name, param in model.named_parameters():
        if model.prefix in name or "original_module" in name:  # LoRA's own tensors (merged), a replaced original
            continue
        tensor = param.data + deltas[name].to(param.dtype) if name in deltas else param.data
        name = name.removeprefix("base_model.model.").replace(".base_layer", "").replace("modules_to_save.default.", "")
        yield name.replace("_checkpoint_wrapped_module.", ""), tensor


def adapters_disabled(model) -> bool:
    """A peft model inside `disable_adapter()` (the LoRA reference): not the weights the engine holds."""
    return any(getattr(m, "disable_adapters", False) is True for m in model.modules() if hasattr(m, "lora_A"))


def _weight_loader(llm) -> Callable:
    return llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights


class VLLMGenerator:
    """A colocated vLLM engine behind `generation.sampling.generate(..., backend=this)`.

    ``version()`` names the policy's weights (the trainer's global step): they are pushed into the
    engine before a generation whenever it differs from the last push. ``is_policy(model)``
    says whether a model handed to `generate` is the trained policy; any other model (a
    separate critic, the LoRA-disabled reference) is generated by "hf" instead. ``engine`` and
    ``make_params`` stand in for `vllm.LLM` / `vllm.SamplingParams` (tests); by default the
    engine is built at first use.
    """

    def __init__(self, model_path: str, *, gpu_memory_utilization: float = 0.3, seed: int = 0, dtype: str = "auto",
                 max_model_len: int | None = None, trust_remote_code: bool = False, num_processes: int = 1,
                 version: Callable[[], object] | None = None, is_policy: Callable[[object], bool] | None = None,
                 engine=None, make_params: Callable[..., object] | None = None):
        self.model_path = model_path
        self.llm_kwargs = dict(gpu_memory_utilization=gpu_memory_utilization, seed=seed, dtype=dtype,
                               max_model_len=max_model_len, trust_remote_code=trust_remote_code)
        self.num_processes = num_processes
        self._llm = engine
        self._make_params = make_params
        self._version = version or (lambda: 0)
        self._is_policy = is_policy or (lambda model: True)
        self.synced_version = None
        self._stale = True
        self.pushes = 0  # weight pushes so far
        self._warned = False

    # ------------------------------------------------------------------ engine
    @property
    def llm(self):
        if self._llm is None:
            vllm = require_vllm()
            kwargs = dict(self.llm_kwargs)
            if self.num_processes > 1:  # one engine per training process, as TRL's colocate mode
                kwargs["distributed_executor_backend"] = "external_launcher"
            self._llm = vllm.LLM(
                model=self.model_path,
                skip_tokenizer_init=True,  # token ids in, token ids out
                generation_config="vllm",  # never the checkpoint's sampling defaults
                enable_sleep_mode=False,
                max_num_batched_tokens=4096,
                **kwargs,
            )
        return self._llm

    def sampling_params(self, **kwargs):
        if self._make_params is None:
            self._make_params = require_vllm().SamplingParams
        return self._make_params(**kwargs)

    # ------------------------------------------------------------------ weights
    def mark_stale(self) -> None:
        """The policy's weights changed without a new version: push them before the next generation."""
        self._stale = True

    def sync(self, model) -> bool:
        """Push `model`'s weights into the engine unless it holds this version already; True when pushed."""
        version = self._version()
        if not self._stale and version == self.synced_version:
            return False
        load = _weight_loader(self.llm)
        for name, tensor in named_weights_for_vllm(model):
            load([(name, tensor)])
        reset = getattr(self.llm, "reset_prefix_cache", None)
        if reset is not None:  # cached prefixes hold the old weights' keys / values
            reset()
        self.synced_version, self._stale = version, False
        self.pushes += 1
        return True

    # ---------------------------------------------------------------- generate
    def generate(self, model, prompts, generation_config, batch_size, stop_seqs=(), progress=None) -> torch.Tensor:
        """`generation.sampling.generate`'s result, from the engine (`batch_size` is the engine's business)."""
        if not self._is_policy(model) or adapters_disabled(model):
            if not self._warned:
                warnings.warn("generation_backend='vllm' holds the policy's weights only: another model "
                              "(a critic, the LoRA-disabled reference) generates with 'hf'")
                self._warned = True
            return generate(model, prompts, generation_config, batch_size, stop_seqs, progress, backend="hf")
        if not len(prompts):
            return torch.full((0, generation_config.max_new_tokens), generation_config.pad_token_id, dtype=torch.long)
        self.sync(model)
        base = int(torch.randint(0, 2**31 - 1, (1,)).item())  # from torch's RNG: manual_seed reproduces a run
        params = [self.sampling_params(**sampling_params_kwargs(generation_config, seed=(base + i) % 2**31))
                  for i in range(len(prompts))]
        outputs = self.llm.generate([{"prompt_token_ids": [int(t) for t in p]} for p in prompts],
                                    sampling_params=params, use_tqdm=bool(progress))
        rows = [list(output.outputs[0].token_ids) for output in outputs]
        return pad_rows(rows, generation_config.max_new_tokens, generation_config.pad_token_id, stop_seqs)


def engine_model_path(policy, save_dir: str, save: bool = True) -> str:
    """Where the engine loads its initial weights: the policy's checkpoint, or a copy saved to `save_dir`
    (a model built in memory has none; only `save` writes it). The weights are pushed before the first
    generation either way."""
    base = _transformers_model(policy)
    path = getattr(base.config, "_name_or_path", "") or ""
    if os.path.isdir(path) or (path and not os.path.isabs(path) and not os.path.exists(path)):
        return path  # a local checkpoint, or a hub id
    if save:
        os.makedirs(save_dir, exist_ok=True)
        base.save_pretrained(save_dir)
    return save_dir


def trainer_generator(trainer) -> VLLMGenerator:
    """The engine of a trainer with generation_backend="vllm" (one per process, built once)."""
    require_vllm()
    args = trainer.args
    policy = trainer.unwrapped_policy()
    accelerator = trainer.accelerator
    path = engine_model_path(policy, os.path.join(args.output_dir, "vllm_init_weights"), accelerator.is_main_process)
    accelerator.wait_for_everyone()  # the copy (if any) is written before any process loads it
    return VLLMGenerator(
        path,
        gpu_memory_utilization=args.vllm_gpu_memory_utilization,
        seed=args.seed + accelerator.process_index,
        dtype=args.torch_dtype,  # "auto": the checkpoint's dtype, as the policy loads it
        max_model_len=args.vllm_max_model_length,
        trust_remote_code=getattr(args, "trust_remote_code", False),
        num_processes=accelerator.num_processes,
        version=lambda: trainer.state.global_step,
        is_policy=lambda model: model is trainer.unwrapped_policy(),
    )
