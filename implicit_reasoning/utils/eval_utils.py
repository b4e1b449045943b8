"""Moved to `implicit_reasoning.evaluation.checkers`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.evaluation import checkers

sys.modules[__name__] = checkers
warnings.warn(
    "implicit_reasoning.utils.eval_utils moved to implicit_reasoning.evaluation.checkers;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
