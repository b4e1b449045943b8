"""Moved to `implicit_reasoning.data.sources`: re-exported here until the next release."""

import warnings

from implicit_reasoning.data.sources import (
    CHOICE_LETTERS,
    GENERATED_SPLIT_SEED_OFFSETS,
    SYNTHETIC_TEXT_KINDS,
    WIKI_TASKS,
    GoldAnswerError,
    arc_example,
    arithmetic_example,
    build_wiki_examples,
    cnn_dailymail_example,
    daily_dialog_example,
    europarl_example,
    generate_arithmetic,
    generate_arithmetic_negative,
    generate_synthetic_text,
    gsm8k_example,
    last_boxed_content,
    math_example,
    mmlu_example,
    mmmlu_example,
    split_rng,
    wikitext_articles,
    wikitext_example,
)

__all__ = [
    "CHOICE_LETTERS",
    "GENERATED_SPLIT_SEED_OFFSETS",
    "SYNTHETIC_TEXT_KINDS",
    "WIKI_TASKS",
    "GoldAnswerError",
    "arc_example",
    "arithmetic_example",
    "build_wiki_examples",
    "cnn_dailymail_example",
    "daily_dialog_example",
    "europarl_example",
    "generate_arithmetic",
    "generate_arithmetic_negative",
    "generate_synthetic_text",
    "gsm8k_example",
    "last_boxed_content",
    "math_example",
    "mmlu_example",
    "mmmlu_example",
    "split_rng",
    "wikitext_articles",
    "wikitext_example",
]

warnings.warn(
    "implicit_reasoning.utils.data_sources moved to implicit_reasoning.data.sources;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
