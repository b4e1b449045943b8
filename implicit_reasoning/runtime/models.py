"""Loading any causal LM and its tokenizer generically: no model names, no per-model token ids."""

from __future__ import annotations

import copy
import inspect
import os
import warnings
import weakref
from contextlib import contextmanager

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from ..data.input_checks import missing_path_message

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer.model", "vocab.txt")
# any of these in a directory: it may hold a tokenizer (some need only their config, e.g. byte-level ones)
TOKENIZER_HINTS = (*TOKENIZER_FILES, "spiece.model", "sentencepiece.bpe.model", "tokenizer_config.json")
_WARNED_TRUNCATION: weakref.WeakSet = weakref.WeakSet()  # tokenizers whose over-long prompt was warned about


def resolve_dtype(name: str):
    """'auto' -> 'auto' (use the checkpoint's dtype), otherwise the torch dtype."""
    return "auto" if name == "auto" else _DTYPES[name]


def choose_pad_token(tokenizer: PreTrainedTokenizerBase) -> str:
    """Pick a pad token: the existing one, else unk, else a reserved/pad special token, else eos."""
    if tokenizer.pad_token is not None:
        return tokenizer.pad_token
    if tokenizer.unk_token is not None:
        return tokenizer.unk_token
    for token in tokenizer.all_special_tokens + list(tokenizer.get_added_vocab()):
        lowered = token.lower()
        if ("pad" in lowered or "reserved" in lowered) and token != tokenizer.eos_token:
            return token
    if tokenizer.eos_token is None:
        raise ValueError("tokenizer has no pad, unk, reserved or eos token: set tokenizer.pad_token before training")
    return tokenizer.eos_token


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, source: str = "the tokenizer") -> None:
    """Fail early on a tokenizer that cannot encode text (e.g. built from a directory without tokenizer files)."""
    if len(tokenizer) == 0 or not tokenizer("a b 1", add_special_tokens=False).input_ids:
        raise ValueError(
            f"{source} has an empty vocabulary (it encodes text to no tokens): the directory holds no "
            f"tokenizer files ({', '.join(TOKENIZER_FILES)}); pass tokenizer_name_or_path=<a hub id or a "
            "directory that has them>"
        )


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """A COPY of `tokenizer` with a pad token chosen generically and left padding (batched generation).

    The caller's tokenizer object is never modified.
    """
    check_tokenizer(tokenizer)
    tokenizer = copy.deepcopy(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = choose_pad_token(tokenizer)
    tokenizer.padding_side = "left"
    return tokenizer


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """`AutoTokenizer.from_pretrained`, checked: a directory without tokenizer files is a clear error."""
    if not name_or_path:
        raise ValueError("no tokenizer to load: pass tokenizer_name_or_path (or a processing_class)")
    if missing_path_message(name_or_path, "tokenizer_name_or_path"):
        raise ValueError(missing_path_message(name_or_path, "tokenizer_name_or_path"))
    if os.path.isdir(name_or_path) and not any(os.path.isfile(os.path.join(name_or_path, f)) for f in TOKENIZER_HINTS):
        raise ValueError(
            f"model directory {name_or_path!r} has no tokenizer files (none of {', '.join(TOKENIZER_HINTS)}; it holds "
            f"{sorted(os.listdir(name_or_path))[:10]}): pass tokenizer_name_or_path=<a hub id or a directory with "
            "them> (--tokenizer_name_or_path on the command line), or save the tokenizer there "
            "(tokenizer.save_pretrained(DIR))"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"could not load a tokenizer from {name_or_path!r} ({first_line}); pass "
            "tokenizer_name_or_path=<a hub id or a directory with tokenizer files>"
        ) from error
    check_tokenizer(tokenizer, f"the tokenizer loaded from {name_or_path!r}")
    return prepare_tokenizer(tokenizer)


def load_causal_lm(name_or_path: str, args) -> torch.nn.Module:
    """`AutoModelForCausalLM.from_pretrained` with the config's dtype / attention / remote-code settings (a local
    path that does not exist is an error saying so, not a hub id's naming rules)."""
    if missing_path_message(name_or_path, "model_name_or_path"):
        raise ValueError(missing_path_message(name_or_path, "model_name_or_path"))
    return AutoModelForCausalLM.from_pretrained(
        name_or_path,
        dtype=resolve_dtype(args.torch_dtype),
        attn_implementation=args.attn_implementation,
        trust_remote_code=args.trust_remote_code,
    )


def name_or_path(model) -> str | None:
    """Where `model` was loaded from (hub id or directory), or None for a model built in memory."""
    config = getattr(model, "config", None)
    return getattr(config, "_name_or_path", None) or None


@contextmanager
def seeded(seed: int, *modules):
    """Inside: torch's RNGs seeded with `seed` (CPU and the CUDA devices `modules` live on); after: as they were.
    What is initialised inside (LoRA adapters, a value head) depends on `seed` only, not on the caller's RNG."""
    devices = sorted({p.device.index or 0 for m in modules for p in m.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextmanager
def eval_mode(model):
    """Run `model` in eval mode (dropout off) and restore its train/eval mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def innermost_model(model):
    """The transformers model under DDP / DeepSpeed (`.module`) and peft (`get_base_model()`) wrappers."""
    while True:
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), torch.nn.Module):
            model = model.module
        else:
            return model


def encode_prompt(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int) -> list[int]:
    """Token ids of a prompt, left-truncated to `max_length`.

    Special tokens (e.g. BOS) are added unless the text already starts with the BOS string,
    as chat-template output does. A prompt that encodes to no token is an error.
    """
    bos = tokenizer.bos_token
    add_special = not (bos and text.startswith(bos))
    ids = tokenizer(text, add_special_tokens=add_special).input_ids
    if not ids:
        raise ValueError(f"prompt {text[:80]!r} encodes to no tokens: an empty prompt, or a tokenizer without a vocabulary")
    if len(ids) > max_length and tokenizer not in _WARNED_TRUNCATION:
        _WARNED_TRUNCATION.add(tokenizer)
        warnings.warn(
            f"a prompt of {len(ids)} tokens is longer than max_prompt_length={max_length}: it is left-truncated "
            f"(its first {len(ids) - max_length} tokens, with any BOS / chat-template header, are cut; it starts "
            f"{text[:60]!r}). Raise max_prompt_length to keep whole prompts. Shown once per tokenizer",
            stacklevel=2,
        )
    return ids[-max_length:]


def encode_continuation(tokenizer: PreTrainedTokenizerBase, text: str, append_eos: bool = False) -> list[int]:
    """Token ids of a continuation segment (no special tokens), optionally followed by eos."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return ids + [tokenizer.eos_token_id] if append_eos and tokenizer.eos_token_id is not None else ids


def stop_sequence_ids(tokenizer: PreTrainedTokenizerBase, stop_seqs: list[str]) -> list[list[int]]:
    """Token-id variants of each stop string as it appears mid-text (bare, after a space, after a newline).

    Sub-word tokenizers encode a string differently depending on what precedes it; the
    variants cover the usual contexts. Leading tokens that only encode the prefix are dropped.
    """
    variants: list[list[int]] = []
    for text in stop_seqs:
        for prefix in ("", " ", "\n"):
            ids = tokenizer(prefix + text, add_special_tokens=False).input_ids
            prefix_ids = tokenizer(prefix, add_special_tokens=False).input_ids if prefix else []
            if prefix_ids and ids[: len(prefix_ids)] == prefix_ids:
                ids = ids[len(prefix_ids) :]
            if ids and ids not in variants:
                variants.append(ids)
    return variants


def end_of_text_ids(tokenizer: PreTrainedTokenizerBase, model=None) -> list[int]:
    """The ids that end a model's text: the tokenizer's eos and every eos id of the model's generation config.

    Chat checkpoints often list their end-of-turn tokens only there (e.g. Llama-3.1-Instruct's
    <|eot_id|> and <|eom_id|>, Phi-3.5's <|end|>). Only these ids are taken from the model's
    generation config: its sampling settings never are.
    """
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if model is not None:
        target = model.get_base_model() if hasattr(model, "get_base_model") else model
        config = getattr(target, "generation_config", None)
        extra = getattr(config, "eos_token_id", None)
        ids += [extra] if isinstance(extra, int) else list(extra or [])
    return list(dict.fromkeys(ids))


def stop_token_ids(
    tokenizer: PreTrainedTokenizerBase, stop_token: str = "eos", extra: list[int] = (), end_ids: list[int] | None = None
) -> list[int]:
    """Ids of the tokens that end a rationale: the end-of-text ids (`end_ids`, default the tokenizer's eos),
    the pad token, or both, plus `extra`."""
    ids = []
    if stop_token in ("eos", "both"):
        ids += end_ids if end_ids is not None else ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
    if stop_token in ("pad", "both") and tokenizer.pad_token_id is not None:
        ids.append(tokenizer.pad_token_id)
    return list(dict.fromkeys(ids + list(extra)))


def _is_dropout_rate(name: str, value) -> bool:
    return type(value) is float and value != 0.0 and name.endswith(DROPOUT_NAME_ENDINGS)


DROPOUT_NAME_ENDINGS = ("dropout", "pdrop", "layerdrop")


def _forward_reads(module, text: str) -> bool:
    """Whether the source of ``module``'s forward mentions ``text`` (True when there is no source to read)."""
    try:
        return text in inspect.getsource(type(module).forward)
    except (OSError, TypeError):
        return True


def disable_dropout(model) -> None:
    """Every dropout off: `nn.Dropout` modules (trl's helper), float rates a module keeps for functional dropout
    (Llama's `attention_dropout`, OPT's `dropout` / `activation_dropout` / `layerdrop`, Bloom's `hidden_dropout`) and
    the rates a submodule's forward reads off its config (Falcon's `self.config.hidden_dropout`: that submodule gets
    a copy with them at 0). The models' own configs, the ones saved, are left as shipped."""
    from transformers import PretrainedConfig, PreTrainedModel
    from trl.trainer.utils import disable_dropout_in_model

    disable_dropout_in_model(model)
    for module in model.modules():
        for name, value in list(vars(module).items()):
            if _is_dropout_rate(name, value):
                setattr(module, name, 0.0)
        config = vars(module).get("config")
        if isinstance(config, PretrainedConfig) and not isinstance(module, PreTrainedModel):
            rates = [name for name, value in vars(config).items()
                     if _is_dropout_rate(name, value) and _forward_reads(module, f"config.{name}")]
            if rates:  # only where its forward reads them: others keep sharing the model's config
                module.config = copy.copy(config)
                for name in rates:
                    setattr(module.config, name, 0.0)

