"""Moved to `implicit_reasoning.trainer.core.docstrings`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import docstrings

sys.modules[__name__] = docstrings
warnings.warn(
    "implicit_reasoning.trainer.docstrings moved to implicit_reasoning.trainer.core.docstrings;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
