"""The built-in offline demo: the demo job, on the tiny tokenizer and model of `implicit_reasoning.tiny` (re-exported).

Nothing here touches a model hub; the library core never imports this package.
"""

from ..tiny.assets import (
    DEMO_DATASET_CONFIG,
    DEMO_SPECIAL_TOKENS,
    DEMO_TASK,
    DEMO_VOCAB_SIZE,
    build_demo_model,
    build_demo_tokenizer,
    demo_corpus,
)
from .jobs import DEMO_RESULTS_FILE, build_warm_start, run_demo, warm_start_dataset

__all__ = [
    "DEMO_DATASET_CONFIG",
    "DEMO_RESULTS_FILE",
    "DEMO_SPECIAL_TOKENS",
    "DEMO_TASK",
    "DEMO_VOCAB_SIZE",
    "build_demo_model",
    "build_demo_tokenizer",
    "build_warm_start",
    "demo_corpus",
    "run_demo",
    "warm_start_dataset",
]
