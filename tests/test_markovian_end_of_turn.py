"""Markovian CoTs and the model's end-of-turn token (issue 20, defect 2).

A chat model ends its turn with a token its generation config lists (SmolLM2's <|im_end|>). A
fixed-length CoT that ignores it runs on into an invented next turn, and the critic then answers
after that. `cot_end_of_turn`: "suppress" (default: the paper's fixed length, the end ids cannot be
sampled inside the CoT), "stop" (the CoT ends at the first end id, after at least one token) or
"ignore" (the end ids are ordinary tokens). The model here wants to end its turn at every step: its
LM head has a large bias on an end-of-turn id that only its generation config names.
"""

import pytest
import torch

from implicit_reasoning.data.registry import load_markovian_examples
from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer
from implicit_reasoning.objectives.markovian import COT
from implicit_reasoning.trainer import MarkovianConfig, MarkovianTrainer

COT_LENGTH = 5


@pytest.fixture(scope="module")
def tok():
    return build_demo_tokenizer()


@pytest.fixture(scope="module")
def data(tok):
    return load_markovian_examples("arithmetic", "train", tok, dataset_config="num_terms=2,max_value=9,num_examples=8")


def _end_of_turn_id(tok) -> int:
    return tok.convert_tokens_to_ids(tok.tokenize("+")[0])  # any ordinary token plays <|im_end|>


def _chat_model(tok, bias: float):
    """A model whose generation config lists an end-of-turn id beside eos, and whose head favours it by `bias`."""
    model = build_demo_model(tok, hidden_size=32, num_layers=2, intermediate_size=64, seed=0)
    eot = _end_of_turn_id(tok)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[eot] = bias
    model.lm_head = head
    model.config.tie_word_embeddings = False
    model.generation_config.eos_token_id = [tok.eos_token_id, eot]
    return model


def _trainer(tok, data, tmp_path, bias=100.0, **overrides):
    values = dict(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, max_steps=1,
                  cot_length=COT_LENGTH, learning_rate=1e-3, report_to=[], use_cpu=True, logging_steps=1,
                  save_strategy="no", disable_tqdm=True, per_device_eval_batch_size=4, seed=0, max_eval_samples=4)
    values.update(overrides)
    config = MarkovianConfig(**values)
    return MarkovianTrainer(_chat_model(tok, bias), config, train_dataset=data, eval_dataset=data,
                            processing_class=tok)


def _rollout_cots(trainer, data) -> list[list[int]]:
    batch = trainer.make_rollout({key: data[key][:2] for key in ("question", "answer")})
    ids, segments = batch["input_ids"].cpu(), batch["segment_ids"].cpu()
    return [row[seg == COT].tolist() for row, seg in zip(ids, segments)]


def test_the_default_keeps_the_fixed_length_and_never_samples_the_end_of_turn(tok, data, tmp_path):
    trainer = _trainer(tok, data, tmp_path)
    ends = {tok.eos_token_id, _end_of_turn_id(tok)}
    cots = _rollout_cots(trainer, data)
    assert all(len(cot) == COT_LENGTH and not ends & set(cot) for cot in cots)
    baseline = next(iter(trainer._baseline_cache.values()))[0]  # the critic's greedy CoT' too
    assert len(baseline) == COT_LENGTH and not ends & set(baseline)
    eval_cots = trainer.eval_cots(trainer.model, list(data["question"][:2]))
    assert all(len(cot) == COT_LENGTH and not ends & set(cot) for cot in eval_cots)
    assert trainer.args.cot_end_of_turn == "suppress"


def test_stop_ends_the_cot_at_the_end_of_turn_after_one_token(tok, data, tmp_path):
    trainer = _trainer(tok, data, tmp_path, cot_end_of_turn="stop")
    ends = {tok.eos_token_id, _end_of_turn_id(tok)}
    cots = _rollout_cots(trainer, data)
    assert all(len(cot) == 1 and not ends & set(cot) for cot in cots)  # then the model ended its turn
    records = trainer.evaluation_records(trainer.model, data.select(range(2)))
    assert all(len(tok(r["rationale"], add_special_tokens=False).input_ids) <= 1 for r in records)


def test_ignore_is_the_old_behaviour_the_end_of_turn_is_an_ordinary_token(tok, data, tmp_path):
    trainer = _trainer(tok, data, tmp_path, cot_end_of_turn="ignore")
    cots = _rollout_cots(trainer, data)
    assert all(len(cot) == COT_LENGTH and _end_of_turn_id(tok) in cot for cot in cots)


@pytest.mark.parametrize("method", ["pg", "ppo"])
def test_stop_trains_on_cots_of_different_lengths(tok, data, tmp_path, method):
    # a moderate bias: the turn ends after a varying number of tokens; two micro-batches of different widths
    trainer = _trainer(tok, data, tmp_path, bias=6.0, cot_end_of_turn="stop", method=method, ppo_epochs=2,
                       per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=2, temperature=1.0)
    lengths = [len(c) for c in _rollout_cots(trainer, data)]
    assert len(set(lengths)) > 1, lengths  # the case this test is about
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_the_field_is_checked():
    with pytest.raises(ValueError, match="cot_end_of_turn='cut': must be one of"):
        MarkovianConfig(output_dir="x", cot_end_of_turn="cut", report_to=[])
