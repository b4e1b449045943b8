"""Moved to `implicit_reasoning.trainer.core.field_checks`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import field_checks

sys.modules[__name__] = field_checks
warnings.warn(
    "implicit_reasoning.trainer.field_checks moved to implicit_reasoning.trainer.core.field_checks;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
