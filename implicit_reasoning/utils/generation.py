"""Batched, left-padded, KV-cached generation that stops as soon as every row has stopped."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList


def left_pad(rows: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into (input_ids, attention_mask)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.as_tensor(list(r), dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids, mask


class StopOnSequences(StoppingCriteria):
    """Marks a row done once its generated tail ends with one of the token sequences."""

    def __init__(self, stop_seqs: Sequence[Sequence[int]], prompt_width: int):
        self.stop_seqs = [torch.as_tensor(list(s), dtype=torch.long) for s in stop_seqs if len(s) > 0]
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        generated = input_ids.shape[1] - self.prompt_width
        for seq in self.stop_seqs:
            if len(seq) <= generated:
                done |= (input_ids[:, -len(seq) :] == seq.to(input_ids.device)).all(dim=1)
        return done


def sampling_config(args, pad_token_id: int, eos_token_ids: list[int], greedy: bool = False, **overrides):
    """A `GenerationConfig` from a TrainerConfig's rollout fields (temperature is honoured)."""
    kwargs = dict(
        max_new_tokens=args.response_length,
        do_sample=not greedy,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_ids or None,
        use_cache=True,
    )
    if not greedy:
        kwargs.update(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k or None)
    kwargs.update(overrides)
    return GenerationConfig(**kwargs)


@torch.no_grad()
def generate(
    model,
    prompts: Sequence[Sequence[int]],
    generation_config: GenerationConfig,
    batch_size: int,
    stop_seqs: Sequence[Sequence[int]] = (),
    progress: str | None = None,
) -> torch.Tensor:
    """Generate for token-list prompts in chunks of `batch_size` rows.

    `progress` (a label) shows a progress bar over batches. Returns the generated tokens only, (len(prompts), max_new_tokens), right-padded with
    the pad id (rows that stopped early are padded after their stop).
    """
    width = generation_config.max_new_tokens
    pad = generation_config.pad_token_id
    device = next(model.parameters()).device
    out = torch.full((len(prompts), width), pad, dtype=torch.long)
    was_training = model.training
    model.eval()
    starts = range(0, len(prompts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=progress, unit="batch")
    for start in starts:
        ids, mask = left_pad(prompts[start : start + batch_size], pad)
        criteria = StoppingCriteriaList([StopOnSequences(stop_seqs, ids.shape[1])]) if stop_seqs else None
        seqs = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            generation_config=generation_config,
            stopping_criteria=criteria,
        )
        new = seqs[:, ids.shape[1] :].cpu()
        out[start : start + len(new), : new.shape[1]] = new
    model.train(was_training)
    return out
