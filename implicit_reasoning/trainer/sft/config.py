"""`SFTBaselineConfig`: supervised fine-tuning on gold rationales (the baseline the RL trainers are compared with)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.base_config import ReasoningPromptFields, TrainerConfig
from ..core.docstrings import documented


@documented
@dataclass
class SFTBaselineConfig(ReasoningPromptFields, TrainerConfig):
    """Shared fields, the question prompt (`cot_trigger`) and the eval rationale budget (`response_length`)."""

    per_device_train_batch_size: int = field(default=8, metadata={"help": "Examples per micro-batch."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate."})
