"""Moved to `implicit_reasoning.objectives.vq`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.objectives import vq

sys.modules[__name__] = vq
warnings.warn(
    "implicit_reasoning.utils.vq moved to implicit_reasoning.objectives.vq;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
