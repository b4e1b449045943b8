"""Moved to `implicit_reasoning.trainer.core.metrics`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.core.metrics import (
    SAMPLES_FILE,
    LogWindow,
    MetricBuffer,
    SamplesTable,
)

__all__ = [
    "SAMPLES_FILE",
    "LogWindow",
    "MetricBuffer",
    "SamplesTable",
]

warnings.warn(
    "implicit_reasoning.trainer.metrics moved to implicit_reasoning.trainer.core.metrics;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
