"""Moved to `implicit_reasoning.tiny.assets`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.tiny import assets

sys.modules[__name__] = assets
warnings.warn(
    "implicit_reasoning.demo.assets moved to implicit_reasoning.tiny.assets;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
