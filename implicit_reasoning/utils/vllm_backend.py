"""Moved to `implicit_reasoning.generation.vllm_backend`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.generation import vllm_backend

sys.modules[__name__] = vllm_backend
warnings.warn(
    "implicit_reasoning.utils.vllm_backend moved to implicit_reasoning.generation.vllm_backend;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
