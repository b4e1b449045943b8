"""SFTBaselineTrainer's update against plain torch: the token mean over the WHOLE update (every micro-batch of every
process), the same for any gradient accumulation (a mean of micro-batch means is not: rows of different lengths)."""

import copy

import datasets
import pytest
import torch

from implicit_reasoning.demo import build_demo_model
from implicit_reasoning.trainer import SFTBaselineConfig, SFTBaselineTrainer

LR = 0.5


def rows() -> list[dict]:
    """8 rows whose rationales run from 3 to ~60 tokens: token mean and mean of micro-batch means differ a lot."""
    return [{"queries": f"Question: {i} + 2\nLet's think step by step.\n", "rationale": "Hmm. " * (3 * i) + f"{i} + 2.",
             "responses": f" The answer is {i + 2}.", "groundtruth": str(i + 2)} for i in range(8)]


def expected_update(tokenizer, model, data) -> dict:
    """float64: -LR x grad of (-sum of log p over every rationale + answer (+ eos) token / their count)."""
    model = model.double()
    total, count = 0.0, 0
    for r in data:
        prompt = tokenizer(r["queries"]).input_ids
        completion = (tokenizer(r["rationale"], add_special_tokens=False).input_ids
                      + tokenizer(r["responses"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id])
        ids = torch.tensor([prompt + completion])
        logps = torch.log_softmax(model(ids).logits[0, :-1], -1)
        total = total - logps[torch.arange(len(prompt) - 1, ids.shape[1] - 1), ids[0, len(prompt):]].sum()
        count += len(completion)
    (total / count).backward()
    return {n: -LR * p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("accumulation", [1, 2, 4])
def test_sft_update_is_the_token_mean_over_the_whole_update(tmp_path, demo_tokenizer, accumulation):
    data = rows()
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    initial = {n: p.detach().clone().double() for n, p in model.named_parameters()}
    reference = copy.deepcopy(model)
    args = SFTBaselineConfig(output_dir=str(tmp_path), per_device_train_batch_size=8 // accumulation,
                             gradient_accumulation_steps=accumulation, max_steps=1, optim="sgd", learning_rate=LR,
                             lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0, report_to=[],
                             save_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_drop_last=True)
    trainer = SFTBaselineTrainer(model, args, train_dataset=datasets.Dataset.from_list(data),
                                 processing_class=demo_tokenizer)
    expected = expected_update(demo_tokenizer, reference.eval(), data)  # the data order does not matter to it
    trainer.train()
    for name, param in trainer.model.named_parameters():
        torch.testing.assert_close(param.detach().double() - initial[name], expected[name], rtol=1e-4, atol=1e-7,
                                   msg=lambda m, name=name: f"{name}: {m}")
