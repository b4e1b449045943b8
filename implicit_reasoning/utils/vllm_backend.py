"""Moved to `implicit_reasoning.generation.vllm_backend`: re-exported here until the next release."""

import warnings

from implicit_reasoning.generation.vllm_backend import (
    NEUTRAL_REQUIRED,
    VLLMGenerator,
    adapters_disabled,
    engine_model_path,
    first_stop_end,
    named_weights_for_vllm,
    pad_rows,
    require_vllm,
    sampling_params_kwargs,
    trainer_generator,
    vllm_available,
)

__all__ = [
    "NEUTRAL_REQUIRED",
    "VLLMGenerator",
    "adapters_disabled",
    "engine_model_path",
    "first_stop_end",
    "named_weights_for_vllm",
    "pad_rows",
    "require_vllm",
    "sampling_params_kwargs",
    "trainer_generator",
    "vllm_available",
]

warnings.warn(
    "implicit_reasoning.utils.vllm_backend moved to implicit_reasoning.generation.vllm_backend;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
