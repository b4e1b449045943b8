"""The GPU paths: every trainer for one update on CUDA in bf16 (and with flash-attn or the vLLM generation backend
where those are installed). Skipped on a machine without CUDA, which is where CI runs; on a GPU machine
`python -m pytest -q tests/test_gpu.py` takes about a minute.

The runs are test_real_model's (LoRA and full fine-tuning, one or two updates), on the tiny demo-shaped model
so that nothing is downloaded: each must train (weights move, every logged number finite) and save a model that
plain transformers loads.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from test_real_model import COMMON, FULL, LORA, RUNS
from transformers import AutoModelForCausalLM

from implicit_reasoning.pipeline import build_trainer
from implicit_reasoning.trainer import trainer_entry

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
HAS_FLASH = importlib.util.find_spec("flash_attn") is not None
HAS_VLLM = importlib.util.find_spec("vllm") is not None


def _train(run: str, model_dir, tmp_path, **extra):
    name = "star" if run.startswith("star") else run
    fields = {**COMMON, **RUNS[run], "use_cpu": False, "bf16": True, "torch_dtype": "float32",
              "model_name_or_path": str(model_dir), "output_dir": str(tmp_path / "run"), **extra}
    trainer = build_trainer(name, trainer_entry(name)[1](**fields))
    assert next(trainer.unwrapped_policy().parameters()).device.type == "cuda"
    before = {n: p.detach().clone() for n, p in trainer.unwrapped_policy().named_parameters() if p.requires_grad}
    trainer.train()
    for row in trainer.state.log_history:
        assert all(math.isfinite(v) for v in row.values() if isinstance(v, float)), row
    now = dict(trainer.unwrapped_policy().named_parameters())
    assert any(not torch.equal(now[n].detach(), v) for n, v in before.items()), f"{run}: no weight moved"
    return trainer


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
@pytest.mark.parametrize("run", sorted(RUNS))
def test_every_trainer_updates_in_bf16_on_cuda(run, lora, tiny_model_dir, tmp_path):
    trainer = _train(run, tiny_model_dir, tmp_path, **(LORA if lora else FULL))
    trainer.save_model(str(tmp_path / "saved"))
    if not lora:
        AutoModelForCausalLM.from_pretrained(str(tmp_path / "saved"))


@pytest.mark.skipif(not HAS_FLASH, reason="flash-attn is not installed (pip install -e '.[flash]')")
@pytest.mark.parametrize("run", ["latro", "markovian", "ppo_curriculum"])
def test_flash_attention_trains(run, tiny_model_dir, tmp_path):
    _train(run, tiny_model_dir, tmp_path, attn_implementation="flash_attention_2", torch_dtype="bfloat16",
           bf16=False, **LORA)


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (pip install -e '.[vllm]')")
def test_vllm_generation_backend_trains(tiny_model_dir, tmp_path):
    _train("latro", tiny_model_dir, tmp_path, generation_backend="vllm", vllm_gpu_memory_utilization=0.2, **FULL)
