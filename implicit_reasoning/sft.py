"""Supervised fine-tuning on gold rationales: the demo's warm start and the SFT baseline LaTRO is compared with.

Each example is tokenized exactly as the RL trainers see it, segment by segment:
ids(query) + ids(rationale) + ids(response) + [eos], with the loss on everything after the query.
"""

from __future__ import annotations

import torch
from transformers import Trainer, TrainingArguments

from .utils.model_utils import encode_continuation, encode_prompt
from .utils.rollout import pack_segments

IGNORE_INDEX = -100


class RationaleSFTCollator:
    """Builds right-padded [x; z; y] batches with labels only on z and y."""

    def __init__(self, tokenizer, max_prompt_length: int = 512):
        self.tokenizer = tokenizer
        self.max_prompt_length = max_prompt_length

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        x = [encode_prompt(tok, r["queries"], self.max_prompt_length) for r in rows]
        z = [encode_continuation(tok, r["rationale"]) for r in rows]
        y = [encode_continuation(tok, r["responses"], append_eos=True) for r in rows]
        ids, mask, segments = pack_segments([x, z, y], tok.pad_token_id)
        labels = ids.masked_fill(segments <= 1, IGNORE_INDEX)  # no loss on the prompt or padding
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def sft_trainer(model, tokenizer, train_dataset, args: TrainingArguments, max_prompt_length: int = 512) -> Trainer:
    """A plain `transformers.Trainer` on columns `queries`, `rationale`, `responses`."""
    missing = [c for c in ("queries", "rationale", "responses") if c not in train_dataset.column_names]
    if missing:
        raise ValueError(f"SFT dataset is missing column(s) {missing}; it has {train_dataset.column_names}")
    args.remove_unused_columns = False
    return Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=RationaleSFTCollator(tokenizer, max_prompt_length),
        processing_class=tokenizer,
    )
