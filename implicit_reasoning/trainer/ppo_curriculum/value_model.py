"""The value network of PPO (a transformer backbone + a scalar head) and the module Trainer trains.

`PolicyAndValue` holds the policy and the value network so that Trainer's one optimizer,
DDP / DeepSpeed wrapping, gradient clipping and checkpointing cover both; its forward runs
both networks over the same packed rows (one call through the DDP wrapper, so gradients of
both are synchronised). Saved layout of a model directory: the policy (full weights or a
LoRA adapter) at the top level, as any causal LM, and the value network under `value_model/`.
"""

from __future__ import annotations

import copy
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ...runtime.sharding import clone_model
from ...scoring.window import window_logprobs

VALUE_DIR = "value_model"
HEAD_FILE = "value_head.safetensors"


def backbone_of(model) -> nn.Module:
    """The transformer under a causal LM's head (`model.model` for Llama, `model.transformer` for GPT-2, ...)."""
    return getattr(model, model.base_model_prefix)


def backbone_peft_config(config, prefix: str):
    """A causal LM's peft config made for its backbone alone: no task type, and module paths of the causal LM
    ("model.layers.0.mlp.up_proj") taken relative to the backbone (`prefix`); names and "all-linear" stay."""
    config = copy.deepcopy(config)
    config.task_type = None
    if isinstance(config.target_modules, (set, list, tuple)):
        lead = prefix + "."
        config.target_modules = {t[len(lead):] if t.startswith(lead) else t for t in config.target_modules}
    return config


class ValueModel(nn.Module):
    """V(s_t) at every position: a backbone's last hidden state through a float32 linear head."""

    def __init__(self, backbone: nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden_size, 1, dtype=torch.float32)
        nn.init.normal_(self.head.weight, std=1.0 / (hidden_size + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_policy(cls, policy) -> ValueModel:
        """A copy of the policy's backbone (its initial weights) with a new head (ZeRO-3: see `runtime/sharding.py`)."""
        backbone = clone_model(backbone_of(policy), "PPO's value network (pass value_model_name_or_path)")
        return cls(backbone, policy.config.hidden_size)

    @classmethod
    def from_pretrained(cls, path: str, args) -> ValueModel:
        """The backbone of a causal LM / base model at `path`; the head too when `path` holds a saved one."""
        from transformers import AutoModel

        from ...runtime.models import resolve_dtype

        backbone = AutoModel.from_pretrained(
            path, dtype=resolve_dtype(args.torch_dtype), trust_remote_code=args.trust_remote_code,
            attn_implementation=args.attn_implementation,
        )
        model = cls(backbone, backbone.config.hidden_size)
        if os.path.exists(os.path.join(path, HEAD_FILE)):
            model.head.load_state_dict(load_file(os.path.join(path, HEAD_FILE)))
        return model

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None) -> torch.Tensor:
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            inputs_embeds=inputs_embeds, use_cache=False,
        ).last_hidden_state
        with torch.autocast(device_type=hidden.device.type, enabled=False):  # bf16 autocast must not round V
            return self.head(hidden.float()).squeeze(-1)

    def save_pretrained(self, directory: str, state_dict: dict | None = None, **kwargs) -> None:
        """The backbone as a transformers / peft model dir plus `value_head.safetensors`."""
        state_dict = state_dict if state_dict is not None else self.state_dict()
        backbone_state = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")}
        head_state = {k[len("head."):]: v.detach().contiguous() for k, v in state_dict.items() if k.startswith("head.")}
        self.backbone.save_pretrained(directory, state_dict=backbone_state, **kwargs)
        save_file(head_state, os.path.join(directory, HEAD_FILE))

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None, **kwargs) -> None:
        self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs, **kwargs)
        if hasattr(self.backbone, "enable_input_require_grads"):  # a frozen (LoRA) backbone under reentrant checkpointing
            self.backbone.enable_input_require_grads()


class PolicyAndValue(nn.Module):
    """What Trainer trains under PPO: `policy` (a causal LM, maybe a PeftModel) and `value` (a ValueModel)."""

    def __init__(self, policy: nn.Module, value: ValueModel):
        super().__init__()
        self.policy, self.value = policy, value

    @property
    def config(self):
        return self.policy.config

    def forward(self, rows: dict, scored: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """Policy log-probs under softmax(logits / temperature) of the `scored` tokens of `forward_window`'s
        window (0 elsewhere; the window also holds their no-grad `token_entropy`), and per-token values.

        The LM head runs on the scored positions only, in chunks (`window_logprobs`): no (B, W, V) logits.
        values[:, j] = V(state before the window's token j), aligned like the log-probs (column 0 is 0).
        """
        logps, window = window_logprobs(self.policy, rows, scored, entropy=True, temperature=temperature)
        return logps, window, self.values(rows, scored)

    def values(self, rows: dict, scored: torch.Tensor) -> torch.Tensor:
        """Per-token values over `forward_window`'s window of `scored` tokens, aligned as in `forward`."""
        first = int(scored.any(dim=0).nonzero()[0]) - 1
        end = int(rows["attention_mask"].any(dim=0).nonzero()[-1]) + 1
        values = self.value(
            input_ids=rows["input_ids"][:, :end], attention_mask=rows["attention_mask"][:, :end],
            position_ids=rows["position_ids"][:, :end] if "position_ids" in rows else None,
        )[:, first:end]
        return torch.cat([values.new_zeros(values.shape[0], 1), values[:, :-1]], dim=1)

    # Trainer and trl's unwrap_model_for_generation switch gradient checkpointing on the trained module
    @property
    def is_gradient_checkpointing(self) -> bool:
        try:  # transformers >= 5.25's name; the old one warns there and goes in v6
            return self.policy.is_activation_checkpointing
        except AttributeError:
            return self.policy.is_gradient_checkpointing

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None, **kwargs) -> None:
        self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs, **kwargs)
        self.value.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs, **kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.policy.gradient_checkpointing_disable()
        self.value.backbone.gradient_checkpointing_disable()


def load_weights(module: nn.Module, directory: str) -> None:
    """Load a directory written by `save_pretrained` into `module` (a causal LM, a PeftModel or a ValueModel).

    Every weight of the module must be in the files (tied weights excepted): a partial load is an error,
    never a warning.
    """
    if isinstance(module, ValueModel):
        load_weights(module.backbone, directory)
        module.head.load_state_dict(load_file(os.path.join(directory, HEAD_FILE)))
        return
    adapter = os.path.join(directory, "adapter_model.safetensors")
    if os.path.exists(adapter):
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        weights = load_file(adapter)
        missing = sorted(set(get_peft_model_state_dict(module)) - set(weights))  # the names a save would write
        result = set_peft_model_state_dict(module, weights)
        if result.unexpected_keys or missing:
            raise ValueError(f"{directory}: adapter weights do not match the model: missing {missing[:5]}, "
                             f"unexpected {result.unexpected_keys[:5]}")
        return
    state = _read_weights(directory)
    result = module.load_state_dict(state, strict=False)
    loaded = {p.data_ptr() for name, p in module.state_dict().items() if name in state}
    missing = [k for k in result.missing_keys if module.state_dict()[k].data_ptr() not in loaded]
    if missing or result.unexpected_keys:
        raise ValueError(f"{directory}: weights do not match the model: missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")


def _read_weights(directory: str) -> dict[str, torch.Tensor]:
    import json

    single = os.path.join(directory, "model.safetensors")
    if os.path.exists(single):
        return load_file(single)
    index = os.path.join(directory, "model.safetensors.index.json")
    if not os.path.exists(index):
        raise FileNotFoundError(f"{directory}: no model.safetensors, model.safetensors.index.json or adapter")
    with open(index) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(load_file(os.path.join(directory, shard)))
    return state
