"""Moved to `implicit_reasoning.generation.sampling`: re-exported here until the next release."""

import warnings

from implicit_reasoning.generation.sampling import (
    GENERATION_BACKENDS,
    NEUTRAL_PROCESSORS,
    NEUTRAL_WARPERS,
    STATIC_CACHE_BUCKET,
    VLLM_INSTALL,
    StopOnSequences,
    check_backend,
    compiled_generation_config,
    current_backend,
    generate,
    left_pad,
    neutral_generation_config,
    sampling_config,
    use_backend,
)

__all__ = [
    "GENERATION_BACKENDS",
    "NEUTRAL_PROCESSORS",
    "NEUTRAL_WARPERS",
    "STATIC_CACHE_BUCKET",
    "VLLM_INSTALL",
    "StopOnSequences",
    "check_backend",
    "compiled_generation_config",
    "current_backend",
    "generate",
    "left_pad",
    "neutral_generation_config",
    "sampling_config",
    "use_backend",
]

warnings.warn(
    "implicit_reasoning.utils.generation moved to implicit_reasoning.generation.sampling;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
