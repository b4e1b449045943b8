"""SFTBaselineTrainer: supervised fine-tuning on gold rationales.

The baseline the RL trainers are compared with, and the demo's warm start. Each example
is tokenized exactly as the RL trainers see it, segment by segment:

    ids(query) + ids(rationale) + ids(response) + [eos]
    loss = -mean over rationale and response tokens of log p(token | prefix)

Rows are packed with every rationale at the same column, so the LM head runs on the
rationale and response positions only. Evaluation is the core's (greedy accuracy, maj@k).
"""

from __future__ import annotations

import torch

from ..utils.model_utils import encode_continuation, encode_prompt
from ..utils.scoring import completion_nll, pack_rows
from .base_trainer import BaseTrainer
from .docstrings import documented
from .sft_config import SFTBaselineConfig

PROMPT, RATIONALE, RESPONSE = 1, 2, 3


class RationaleCollator:
    """Packs rows (`queries`, `rationale`, `responses`) into [x; z; y] tensors aligned on z."""

    def __init__(self, tokenizer, max_prompt_length: int = 512):
        self.tokenizer = tokenizer
        self.max_prompt_length = max_prompt_length

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        x = [encode_prompt(tok, r["queries"], self.max_prompt_length) for r in rows]
        z = [encode_continuation(tok, r["rationale"]) for r in rows]
        y = [encode_continuation(tok, r["responses"], append_eos=True) for r in rows]
        return pack_rows([x, z, y], tok.pad_token_id, align=RATIONALE - 1)


@documented
class SFTBaselineTrainer(BaseTrainer):
    """SFT on columns `queries` (the prompt), `rationale` and `responses` (the answer text)."""

    trainer_name = "sft"
    config_class = SFTBaselineConfig
    required_columns = ("queries", "rationale", "responses")
    args: SFTBaselineConfig

    def make_collator(self, tokenizer, args):
        return RationaleCollator(tokenizer, args.max_prompt_length)

    def compute_objective(self, model, batch: dict) -> dict[str, torch.Tensor]:
        # loss = -mean_{tokens of z and y} log p(token | prefix), one forward, LM head on z and y only
        return {"loss": completion_nll(model, batch, RATIONALE)}
