"""Moved to `implicit_reasoning.runtime.models`: re-exported here until the next release."""

import warnings

from implicit_reasoning.runtime.models import (
    TOKENIZER_FILES,
    TOKENIZER_HINTS,
    check_tokenizer,
    choose_pad_token,
    disable_dropout,
    encode_continuation,
    encode_prompt,
    end_of_text_ids,
    eval_mode,
    innermost_model,
    load_causal_lm,
    load_tokenizer,
    name_or_path,
    prepare_tokenizer,
    resolve_dtype,
    seeded,
    stop_sequence_ids,
    stop_token_ids,
)

__all__ = [
    "TOKENIZER_FILES",
    "TOKENIZER_HINTS",
    "check_tokenizer",
    "choose_pad_token",
    "disable_dropout",
    "encode_continuation",
    "encode_prompt",
    "end_of_text_ids",
    "eval_mode",
    "innermost_model",
    "load_causal_lm",
    "load_tokenizer",
    "name_or_path",
    "prepare_tokenizer",
    "resolve_dtype",
    "seeded",
    "stop_sequence_ids",
    "stop_token_ids",
]

warnings.warn(
    "implicit_reasoning.utils.model_utils moved to implicit_reasoning.runtime.models;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
