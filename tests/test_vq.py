"""Vector-quantised Markovian variant: pure VQ functions by hand, gradients through the frozen critic."""

import pytest
import torch

from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer
from implicit_reasoning.trainer import MarkovianConfig, MarkovianTrainer
from implicit_reasoning.trainer.markovian_trainer import ANSWER_MARKER
from implicit_reasoning.utils.data_utils import load_markovian_examples
from implicit_reasoning.utils.vq import (
    codebook_loss,
    cosine_similarity_logits,
    quantize,
    select_codes,
    straight_through,
)

REASON = 3
# rows with very different norms: cosine and dot product disagree on h = (0.6, 0.8)
TABLE = torch.tensor([[10.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])


# ------------------------------------------------------------------------------ pure VQ
def test_nearest_code_is_by_cosine_not_dot_product():
    hidden = torch.tensor([[[0.6, 0.8], [-3.0, -2.9]]])
    unit, similarity = cosine_similarity_logits(hidden, TABLE)
    assert torch.allclose(unit[0, 0], torch.tensor([0.6, 0.8]))
    assert torch.allclose(similarity[0, 0], torch.tensor([0.6, 0.8, -1.4 / 2**0.5]), atol=1e-6)
    indices, weights = select_codes(similarity, use_argmax=True)
    assert indices.tolist() == [[1, 2]] and weights is None  # dot product would pick row 0 for h_0


def test_sampling_gumbel_and_temperature():
    _, similarity = cosine_similarity_logits(torch.tensor([[[0.6, 0.8]] * 64]), TABLE)
    cold, _ = select_codes(similarity, temperature=1e-3, use_argmax=False)
    assert cold.eq(1).all()  # a very low temperature samples the nearest code
    torch.manual_seed(0)
    warm, _ = select_codes(similarity, temperature=10.0, use_argmax=False)
    assert len(set(warm.flatten().tolist())) > 1
    hard, weights = select_codes(similarity, temperature=1e-3, use_argmax=True, gumbel=True)
    assert hard.eq(1).all() and weights is None
    soft_idx, soft = select_codes(similarity, gumbel=True, use_argmax=False, gumbel_tau=0.5)
    assert soft.shape == (1, 64, 3) and torch.allclose(soft.sum(-1), torch.ones(1, 64))
    assert torch.equal(soft_idx, soft.argmax(-1))


def test_straight_through_value_and_gradient():
    h = torch.tensor([0.3, -0.2], requires_grad=True)
    e = torch.tensor([1.0, 2.0])
    out = straight_through(h, e)
    assert torch.allclose(out, e)
    (out * torch.tensor([2.0, 3.0])).sum().backward()
    assert h.grad.tolist() == [2.0, 3.0]  # identity to h


def test_codebook_loss_by_hand():
    unit = torch.tensor([[[0.6, 0.8]]], requires_grad=True)
    code = torch.tensor([[[0.0, 5.0]]], requires_grad=True)  # normalised to (0, 1)
    loss = codebook_loss(unit, code)
    assert loss.item() == pytest.approx((0.6**2 + 0.2**2) / 2)
    loss.backward()
    assert code.grad is None or code.grad.abs().sum() == 0  # the code side is detached


def test_quantize_feeds_exact_embeddings_and_passes_gradient():
    embedding = torch.nn.Embedding.from_pretrained(TABLE.clone())
    hidden = torch.tensor([[[0.6, 0.8], [5.0, 0.1]]], requires_grad=True)
    out = quantize(hidden, embedding.weight, embedding)
    assert out["indices"].tolist() == [[1, 0]]
    assert torch.allclose(out["inputs"], TABLE[[1, 0]].unsqueeze(0), atol=1e-6)  # the critic sees e exactly
    out["inputs"].sum().backward()
    assert hidden.grad.abs().sum() > 0


def test_quantize_soft_gumbel_mixes_codes():
    embedding = torch.nn.Embedding.from_pretrained(TABLE.clone())
    out = quantize(torch.tensor([[[0.6, 0.8]]]), embedding.weight, embedding, gumbel=True, use_argmax=False)
    assert out["inputs"].shape == (1, 1, 2) and torch.isfinite(out["inputs"]).all()


# --------------------------------------------------------------------------- the trainer
@pytest.fixture(scope="module")
def tok():
    return build_demo_tokenizer()


@pytest.fixture(scope="module")
def train_data(tok):
    return load_markovian_examples("arithmetic", "train", tok, dataset_config="num_terms=3,max_value=20,num_examples=8")


def make_vq_trainer(tok, data, tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path), use_vq=True, vq_reason_length=REASON, rloo_k=1, per_device_train_batch_size=4,
        max_steps=3, learning_rate=1e-2, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
        logging_steps=1, max_prompt_length=96,
    )
    values.update(overrides)
    model = build_demo_model(tok, hidden_size=64, num_layers=2, intermediate_size=128)
    return MarkovianTrainer(model, MarkovianConfig(**values), train_dataset=data, processing_class=tok)


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(vq_use_argmax=False, vq_sampling_temp=0.05, vq_hidden_layer=1), dict(vq_gumbel_softmax=True)],
    ids=["argmax", "sample-layer1", "gumbel-hard"],
)
def test_training_moves_the_actor_and_never_the_critic(tok, train_data, tmp_path, overrides):
    torch.set_num_threads(1)
    trainer = make_vq_trainer(tok, train_data, tmp_path, **overrides)
    critic, actor = trainer.ref_model, trainer.model
    assert all(not p.requires_grad for p in critic.parameters())
    critic_before, actor_before = _snapshot(critic), _snapshot(actor)
    trainer.train()
    assert all(torch.equal(critic_before[n], p) for n, p in critic.named_parameters())  # bit-identical
    assert any(not torch.equal(actor_before[n], p) for n, p in actor.named_parameters())


def test_gradients_flow_through_the_frozen_critic_into_the_actor(tok, train_data, tmp_path):
    trainer = make_vq_trainer(tok, train_data, tmp_path, vq_codebook_weight=0.0)  # only the answer NLL
    batch = {**trainer.make_rollout({k: train_data[k][:4] for k in ("question", "answer")}), "rollout_pass": 0}
    parts = trainer.compute_objective(trainer.model, batch)
    parts["loss"].backward()
    assert parts["answer_nll"] > 0 and parts["codebook_loss"] >= 0
    grads = [p.grad for p in trainer.model.parameters()]
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    assert all(p.grad is None for p in trainer.ref_model.parameters())


def test_critic_input_has_no_question_token(tok, train_data, tmp_path):
    trainer = make_vq_trainer(tok, train_data, tmp_path)
    prompts = {"question": ["77 + 88 + 99"], "answer": ["264"]}
    batch = {**trainer.make_rollout(prompts), "rollout_pass": 0}
    seen = []
    trainer.ref_model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs), with_kwargs=True)
    trainer.compute_objective(trainer.model, batch)
    (kwargs,) = seen
    assert kwargs.get("input_ids") is None  # embeddings only: [codes; " Answer:"; answer]
    suffix = tok(ANSWER_MARKER).input_ids + tok(" 264").input_ids
    assert kwargs["inputs_embeds"].shape[1] == len(trainer.fresh_prefix_ids) + REASON + len(suffix)

    embedding = trainer.ref_model.get_input_embeddings()
    hidden = trainer._vq_hidden(trainer.model, batch)
    q = trainer._quantize(trainer.ref_model, hidden)
    inputs = trainer.vq_critic_inputs(trainer.ref_model, q["inputs"], q["indices"], batch)
    fixed = inputs["input_ids"][0, len(trainer.fresh_prefix_ids) + REASON :].tolist()
    assert fixed == suffix
    question_ids = {tok(" 77").input_ids[0], tok(" 88").input_ids[0], tok(" 99").input_ids[0]}
    assert not question_ids & set(fixed)
    codes = inputs["inputs_embeds"][0, len(trainer.fresh_prefix_ids) : len(trainer.fresh_prefix_ids) + REASON]
    assert torch.allclose(codes, embedding(q["indices"][0]), atol=1e-6)  # codes are exact token embeddings
    assert torch.allclose(kwargs["inputs_embeds"], inputs["inputs_embeds"])


def test_vq_with_lora_keeps_base_weights(tok, train_data, tmp_path):
    trainer = make_vq_trainer(tok, train_data, tmp_path, use_lora=True, lora_r=4, max_steps=2)
    assert trainer.ref_model is None  # the critic is the adapter-disabled policy
    base = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" not in n}
    lora = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    trainer.train()
    params = dict(trainer.model.named_parameters())
    assert all(torch.equal(base[n], params[n]) for n in base)
    assert any(not torch.equal(lora[n], params[n]) for n in lora)


def test_vq_evaluation_uses_argmax_codes(tok, train_data, tmp_path):
    trainer = make_vq_trainer(tok, train_data, tmp_path, max_eval_samples=2)
    records = trainer.evaluation_records(trainer.model, train_data)
    assert [r["index"] for r in records] == [0, 1]
    assert all(len(tok(r["rationale"]).input_ids) >= 1 for r in records)


def test_vq_hidden_layer_out_of_range_is_an_error(tok, train_data, tmp_path):
    with pytest.raises(ValueError, match="vq_hidden_layer=7"):
        make_vq_trainer(tok, train_data, tmp_path, vq_hidden_layer=7)
