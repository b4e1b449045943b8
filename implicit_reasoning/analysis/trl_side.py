"""The TRL side of the benchmark: TRL's RLOOTrainer on our workload, with the reward a user would write for LaTRO.

TRL's reward is the policy's own log-likelihood of the gold answer after the completion, log p(y | x, z):
one no-grad forward of the trainer's current model per batch, logits only from the answer on. Chat
prompts go to TRL in its conversational format (a list of messages), which it renders with the same
chat template our side's prompt text was made with; the reward renders them the same way.
"""

from __future__ import annotations

import os

import datasets
import torch


def _prompt_ids(tokenizer, prompt) -> list[int]:
    """Token ids of a TRL prompt: a string (tokenized as TRL does) or a conversation (its chat template)."""
    if isinstance(prompt, str):
        return tokenizer(prompt)["input_ids"]
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"]


def latro_reward(holder: dict, tokenizer):
    """TRL reward function: log p(answer | prompt, completion) under the trainer's current policy (no grad)."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    @torch.no_grad()
    def reward(prompts, completions, completion_ids, responses, **kwargs):
        trainer = holder["trainer"]
        model = trainer.accelerator.unwrap_model(trainer.model)
        rows, spans = [], []
        for prompt, z, answer in zip(prompts, completion_ids, responses):
            x = _prompt_ids(tokenizer, prompt)
            y = tokenizer(answer, add_special_tokens=False)["input_ids"] + eos
            rows.append(x + list(z) + y)
            spans.append((len(x) + len(z), len(y)))
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        keep = width - min(start for start, _ in spans) + 1  # logits from the position predicting y_1 on
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=keep).logits
        model.train(was_training)
        logps = torch.log_softmax(logits.float(), dim=-1)
        out = []
        for i, (start, length) in enumerate(spans):
            first = start - 1 - (width - keep)  # logits column predicting y_1
            target = ids[i, start : start + length].to(device)
            out.append(float(logps[i, first : first + length].gather(-1, target.unsqueeze(-1)).sum()))
        return out

    return reward


def build_trl(args, model, tokenizer, rows: list[dict], output_dir: str, trainer_kwargs: dict):
    """TRL's RLOOTrainer on the same workload. Its reference is loaded from `model.config._name_or_path`: a
    save of the initial weights in `output_dir/initial` (the same weights the policy starts from)."""
    from trl import RLOOConfig, RLOOTrainer

    initial = os.path.join(output_dir, "initial")
    model.save_pretrained(initial)
    tokenizer.save_pretrained(initial)
    model.config._name_or_path = initial
    config = RLOOConfig(
        **trainer_kwargs, num_generations=args.k,
        max_completion_length=args.response_length, generation_kwargs={"min_new_tokens": args.response_length},
        temperature=args.temperature, top_p=1.0, top_k=0, beta=args.kl_coef, num_iterations=1, log_completions=False,
    )
    dataset = datasets.Dataset.from_list([{"prompt": r["messages"] or r["queries"], "responses": r["responses"]}
                                          for r in rows])
    holder: dict = {}
    trainer = RLOOTrainer(model, reward_funcs=latro_reward(holder, tokenizer), args=config,
                          train_dataset=dataset, processing_class=tokenizer)
    holder["trainer"] = trainer
    return trainer
