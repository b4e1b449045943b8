"""SFTBaselineTrainer: supervised fine-tuning on gold rationales.

The baseline the RL trainers are compared with, and the demo's warm start. Each example
is tokenized exactly as the RL trainers see it, segment by segment:

    ids(query) + ids(rationale) + ids(response) + [eos]
    loss = -(sum over the update's rationale and response tokens of log p(token | prefix)) / their count

The mean is over the whole update: every micro-batch of gradient accumulation on every process
(`get_batch_samples` counts the update's tokens once), so the update does not depend on how the
rows fall on micro-batches or processes.

Rows are packed with every rationale at the same column, so the LM head runs on the
rationale and response positions only. Evaluation is the core's (greedy accuracy, maj@k).
"""

from __future__ import annotations

import torch

from ...runtime.models import encode_continuation, encode_prompt
from ...scoring.logprobs import masked_sum, token_normalizer
from ...scoring.packing import pack_rows
from ...scoring.window import window_logprobs
from ..core.base_trainer import BaseTrainer
from ..core.docstrings import documented
from .config import SFTBaselineConfig

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

    @classmethod
    def eval_columns_needed(cls, args) -> tuple[str, ...]:
        """Evaluation is the answers' greedy accuracy: the prompt and the gold answer."""
        return ("queries", "groundtruth")

    def make_collator(self, tokenizer, args):
        return RationaleCollator(tokenizer, args.max_prompt_length)

    def get_batch_samples(self, epoch_iterator, num_batches: int, device):
        """The update's micro-batches, each told the update's token normalizer (a collective: every process)."""
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        tokens = sum(int((b["segment_ids"] >= RATIONALE).sum()) for b in batches)
        total = int(self.sum_over_processes(torch.tensor([float(tokens)])).item())
        normalizer = token_normalizer([total], self.accelerator.num_processes, max(len(batches), 1))
        for batch in batches:
            batch["token_normalizer"] = torch.tensor(normalizer)
        return batches, num_items

    def compute_objective(self, model, batch: dict) -> dict[str, torch.Tensor]:
        # loss = -sum_{tokens of z and y} log p(token | prefix) / the update's count of such tokens (scaled for
        # Trainer's division by the accumulation steps and DDP's mean over processes); one forward, LM head on z, y
        scored = batch["segment_ids"] >= RATIONALE
        logps, window = window_logprobs(model, batch, scored)
        normalizer = batch.get("token_normalizer", scored.sum().clamp(min=1))  # outside training: this batch's
        return {"loss": -masked_sum(logps, window["segment_ids"] >= RATIONALE) / normalizer}
