"""Moved to `implicit_reasoning.scoring.lm_head`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.scoring import lm_head

sys.modules[__name__] = lm_head
warnings.warn(
    "implicit_reasoning.utils.lm_head moved to implicit_reasoning.scoring.lm_head;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
