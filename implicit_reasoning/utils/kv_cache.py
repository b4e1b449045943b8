"""Moved to `implicit_reasoning.runtime.kv_cache`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.runtime import kv_cache

sys.modules[__name__] = kv_cache
warnings.warn(
    "implicit_reasoning.utils.kv_cache moved to implicit_reasoning.runtime.kv_cache;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
