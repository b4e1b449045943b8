"""Moved to `implicit_reasoning.trainer.star.data`: re-exported here until the next release."""

import warnings

from implicit_reasoning.trainer.star.data import (
    CHECKPOINT_DATA_FILE,
    GENERATED_FILE,
    REQUIRED_FIELDS,
    PacingSampler,
    SaveIterationData,
    ValidateAtIterationEnds,
    load_generations,
    write_generations,
)

__all__ = [
    "CHECKPOINT_DATA_FILE",
    "GENERATED_FILE",
    "REQUIRED_FIELDS",
    "PacingSampler",
    "SaveIterationData",
    "ValidateAtIterationEnds",
    "load_generations",
    "write_generations",
]

warnings.warn(
    "implicit_reasoning.trainer.star_data moved to implicit_reasoning.trainer.star.data;"
    " the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
