"""Moved to `implicit_reasoning.trainer.core.output_dir`: this old path is that module, until the next release."""

import sys
import warnings

from implicit_reasoning.trainer.core import output_dir

sys.modules[__name__] = output_dir
warnings.warn(
    "implicit_reasoning.trainer.output_dir moved to implicit_reasoning.trainer.core.output_dir;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
