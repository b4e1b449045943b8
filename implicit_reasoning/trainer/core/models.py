"""The models a trainer holds: the policy's base path, the tokenizer, LoRA adapters and the frozen reference.

A mixin of `BaseTrainer`, kept apart so that the core reads as the training loop's hooks. The reference
is a separate frozen model (a fresh load from `ref_model_name_or_path`, or the policy's weights: under
ZeRO-3 rebuilt from its config, never a deepcopy of partitioned shards, `runtime/sharding.py`), or with
LoRA the policy itself with its adapter disabled (no second copy of the weights).
"""

from __future__ import annotations

import copy
import os
from contextlib import contextmanager

import torch

from ...runtime import models as model_utils
from ...runtime import sharding


class ModelsMixin:
    """Loading and preparing the policy's companions; `BaseTrainer` calls these from `__init__`."""

    @contextmanager
    def reference_model(self):
        """The frozen reference in eval mode (no dropout): a separate model, or the policy with LoRA disabled."""
        if self.ref_model is not None:
            with model_utils.eval_mode(self.ref_model):
                yield self.ref_model
            return
        unwrapped = self.unwrapped_policy()
        with unwrapped.disable_adapter(), model_utils.eval_mode(unwrapped):
            yield unwrapped

    @torch.no_grad()
    def refresh_reference(self) -> None:
        """Make the reference a copy of the current policy weights (STaR-DPO, frozen curriculum copies)."""
        if self.ref_model is None:
            raise NotImplementedError(
                "refresh_reference() with LoRA: the reference is the adapter-disabled base model and "
                "cannot follow the adapter; train without LoRA or pass a separate ref_model"
            )
        sharding.copy_weights(self.unwrapped_policy(), self.accelerator.unwrap_model(self.ref_model))

    @staticmethod
    def _base_model_path(model, args, use_peft: bool) -> str | None:
        """Where the base weights can be reloaded from; LoRA adapters record it (an absolute dir or a hub id)."""
        path = args.model_name_or_path or model_utils.name_or_path(model)
        if path and os.path.isdir(path):
            path = os.path.abspath(path)
        if use_peft and not path:
            raise ValueError(
                "use_lora=True with a model built in memory: its adapter would record no base model and "
                "could not be reloaded. Save the base model (model.save_pretrained(DIR)) and pass "
                "model_name_or_path=DIR (the hub id or directory of the base weights)"
            )
        return path

    def _tokenizer(self, args, processing_class):
        """A prepared COPY of the given tokenizer, or the one at tokenizer_name_or_path / the model's path."""
        if processing_class is not None:
            return model_utils.prepare_tokenizer(processing_class)
        path = args.tokenizer_name_or_path or self.base_model_path
        if not path:
            raise ValueError(
                f"{type(self).__name__}: no tokenizer: pass processing_class, or tokenizer_name_or_path "
                "(the model was built in memory, so there is no model directory to load one from)"
            )
        return model_utils.load_tokenizer(path, args.trust_remote_code)

    def _build_reference(self, model, args, ref_model, use_peft: bool):
        """None with LoRA (the adapter-disabled base is the reference), else a frozen model in eval mode."""
        if use_peft and ref_model is None:
            return None
        ref_path = getattr(args, "ref_model_name_or_path", None)
        if isinstance(ref_model, str) or (ref_model is None and ref_path):
            ref_model = model_utils.load_causal_lm(ref_model or ref_path, args)
        elif ref_model is None:  # the policy's weights (ZeRO-3: rebuilt from its config, never a deepcopy of shards)
            ref_model = sharding.clone_model(model, "the reference model (pass ref_model or ref_model_name_or_path)")
        if args.disable_dropout:
            model_utils.disable_dropout(ref_model)
        return ref_model.eval().requires_grad_(False)

    def _maybe_wrap_peft(self, model, args, peft_config):
        from peft import LoraConfig, get_peft_model

        if peft_config is None:
            targets = args.lora_target_modules
            peft_config = LoraConfig(
                r=args.lora_r,
                lora_alpha=args.lora_alpha,
                lora_dropout=args.lora_dropout,
                target_modules=targets[0] if targets == ["all-linear"] else targets,
                task_type="CAUSAL_LM",
            )
        dropout = getattr(peft_config, "lora_dropout", 0) or 0
        if dropout and args.disable_dropout:  # as the config's own lora_dropout (base_config.validate)
            raise ValueError(f"peft_config has lora_dropout={dropout} with disable_dropout=True: every dropout is off, "
                             "so it would have no effect; set disable_dropout=False to train with dropout, or "
                             "lora_dropout=0")
        if args.gradient_checkpointing:
            model.enable_input_require_grads()
        self.peft_config_given = copy.deepcopy(peft_config)  # companions (PPO's value net) take the same settings
        with model_utils.seeded(args.seed, model):  # the adapters initialise from `seed`
            model = get_peft_model(model, peft_config)
        for config in model.peft_config.values():  # saved adapters name a base that loads
            config.base_model_name_or_path = self.base_model_path
        return model

    def _prepare_reference(self, ref_model):
        if ref_model is None:
            return None
        if self.is_deepspeed_enabled:
            from trl.models import prepare_deepspeed

            return prepare_deepspeed(ref_model, self.accelerator)
        return self.accelerator.prepare_model(ref_model, evaluation_mode=True)
