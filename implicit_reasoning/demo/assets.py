"""Moved to `implicit_reasoning.tiny.assets`: re-exported here until the next release."""

import warnings

from implicit_reasoning.tiny.assets import (
    DEMO_DATASET_CONFIG,
    DEMO_SPECIAL_TOKENS,
    DEMO_TASK,
    DEMO_VOCAB_SIZE,
    build_demo_model,
    build_demo_tokenizer,
    demo_corpus,
)

__all__ = [
    "DEMO_DATASET_CONFIG",
    "DEMO_SPECIAL_TOKENS",
    "DEMO_TASK",
    "DEMO_VOCAB_SIZE",
    "build_demo_model",
    "build_demo_tokenizer",
    "demo_corpus",
]

warnings.warn(
    "implicit_reasoning.demo.assets moved to implicit_reasoning.tiny.assets;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
