"""Copies of models whose parameters DeepSpeed ZeRO-3 may have partitioned.

Under ZeRO-3 a model loaded by `from_pretrained` (or built by `_from_config`) holds only this
process's shard of every parameter: `copy.deepcopy` of it copies empty placeholders, which
DeepSpeed then refuses to run ("status NOT_AVAILABLE, numel 0"). A frozen copy (a reference
model, the Markovian critic, PPO's value backbone) is therefore built the way transformers
builds a partitioned model: a fresh instance of the same class from the model's config (under
ZeRO-3 transformers partitions it at construction), whose weights are then copied from the
source one parameter at a time, each gathered only while it is copied (peak memory: one full
parameter). Models that are not partitioned are deep-copied, as before.

This works for any source: a hub id, a local directory or a model built in memory; it needs
only a `PreTrainedModel` (a class that can be built from its config).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch


def is_partitioned(module: torch.nn.Module) -> bool:
    """Whether DeepSpeed ZeRO-3 partitioned any parameter of `module` (it carries a `ds_id`)."""
    return any(hasattr(p, "ds_id") for p in module.parameters())


@contextmanager
def gathered(parameters, modifier_rank: int | None = None):
    """The full values of ZeRO-3 partitioned `parameters` inside the block (a no-op for ordinary ones).

    Every process must enter it with the same parameters. With `modifier_rank`, that rank's writes
    are kept (and sent to every process) when the block ends; otherwise writes are discarded.
    """
    parameters = [p for p in parameters if hasattr(p, "ds_id")]
    if not parameters:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(parameters, modifier_rank=modifier_rank):
        yield


@torch.no_grad()
def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Copy every parameter and persistent buffer of `source` into `target` (same names), one at a time.

    Either side may be ZeRO-3 partitioned: each pair is gathered only while it is copied. A name of
    `target` missing from `source` is an error (a silent partial copy would train against a mix).
    """
    sources = dict(source.named_parameters())
    missing = [name for name, _ in target.named_parameters() if name not in sources]
    if missing:
        raise ValueError(f"cannot copy {type(source).__name__} into {type(target).__name__}: "
                         f"parameters {missing[:5]} have no counterpart")
    for name, param in target.named_parameters():
        with gathered([sources[name], param], modifier_rank=0):
            param.data.copy_(sources[name].data)
    source_buffers = dict(source.named_buffers())
    for name, buffer in target.named_buffers():
        if name in source_buffers:
            buffer.data.copy_(source_buffers[name].data)


def clone_model(model: torch.nn.Module, purpose: str = "a frozen copy") -> torch.nn.Module:
    """A copy of `model` with its current weights, correct whether or not ZeRO-3 partitioned it.

    Not partitioned: `copy.deepcopy`. Partitioned: the same class built from a copy of its config
    (partitioned by transformers when ZeRO-3 is on), the weights copied by `copy_weights`. A
    partitioned model that cannot be built from its config is an error naming `purpose`.
    """
    if not is_partitioned(model):
        return copy.deepcopy(model)
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise ValueError(
            f"{purpose}: the model is a {type(model).__name__} whose parameters DeepSpeed ZeRO-3 has partitioned; "
            "only a transformers PreTrainedModel can be rebuilt from its config. Pass the copy yourself (a "
            "separate model, or its hub id / directory) or train without ZeRO-3"
        )
    from transformers.initialization import no_init_weights

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    # building it must not draw from the RNG: what is initialised next (PPO's value head, LoRA adapters) then starts
    # from the same random state as under any other engine
    with torch.random.fork_rng(devices=devices), no_init_weights():  # every weight is overwritten below
        clone = type(model)._from_config(copy.deepcopy(model.config), dtype=model.dtype)
    copy_weights(model, clone)
    if getattr(model, "generation_config", None) is not None:
        clone.generation_config = copy.deepcopy(model.generation_config)
    return clone
