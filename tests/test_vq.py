"""Vector-quantised Markovian variant: pure VQ functions by hand, gradients through the frozen critic."""

import pytest
import torch

from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer
import os

from implicit_reasoning.data.registry import load_markovian_examples
from implicit_reasoning.objectives.markovian import ANSWER_MARKER, COT
from implicit_reasoning.objectives.vq import (
    codebook_loss,
    cosine_similarity_logits,
    quantize,
    select_codes,
    straight_through,
)
from implicit_reasoning.trainer import MarkovianConfig, MarkovianVQTrainer

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


def _soft_weights(hidden, seed, **kwargs):
    """The Gumbel-softmax weights quantize draws with the same seed (recomputed independently)."""
    torch.manual_seed(seed)
    _, similarity = cosine_similarity_logits(hidden, TABLE)
    indices, weights = select_codes(similarity, gumbel=True, use_argmax=False, **kwargs)
    return indices, weights


def test_quantize_soft_gumbel_mixes_codes():
    embedding = torch.nn.Embedding.from_pretrained(TABLE.clone())
    hidden = torch.tensor([[[0.6, 0.8]] * 16], requires_grad=True)
    torch.manual_seed(0)
    out = quantize(hidden, embedding.weight, embedding, gumbel=True, use_argmax=False, gumbel_tau=1.0)
    indices, weights = _soft_weights(hidden.detach(), 0, gumbel_tau=1.0)
    assert torch.equal(out["indices"], indices) and torch.equal(indices, weights.argmax(-1))
    assert torch.allclose(weights.sum(-1), torch.ones(1, 16)) and (weights >= 0).all()
    assert (weights.max(-1).values < 0.99).any()  # tau = 1: genuinely soft weights
    # the critic sees the weighted mix of table rows (nn.Embedding does not rescale: scale 1) ...
    assert torch.allclose(out["inputs"], weights @ TABLE, atol=1e-5)
    # ... which is no single row for some position
    distance_to_rows = (out["inputs"].detach()[0, :, None, :] - TABLE[None]).norm(dim=-1).min(dim=-1).values
    assert (distance_to_rows > 0.1).any()
    # codebook loss against the unit mix; the gradient reaches h (straight-through)
    mixed_unit = torch.nn.functional.normalize(weights @ TABLE, dim=-1)
    assert out["codebook_loss"].item() == pytest.approx(((out["unit"] - mixed_unit) ** 2).mean().item(), rel=1e-5)
    out["inputs"].sum().backward()
    assert hidden.grad.abs().sum() > 0


def test_quantize_soft_gumbel_scales_like_the_embedding_and_hardens_as_tau_shrinks():
    base = torch.nn.Embedding.from_pretrained(TABLE.clone())

    def embed(ids):  # an input-embedding module that scales the table (e.g. Gemma's sqrt(d))
        return 3.0 * base(ids)

    hidden = torch.tensor([[[0.6, 0.8], [-3.0, -2.9], [5.0, 0.1]]])
    torch.manual_seed(1)
    out = quantize(hidden, TABLE, embed, gumbel=True, use_argmax=False, gumbel_tau=2.0)
    _, weights = _soft_weights(hidden, 1, gumbel_tau=2.0)
    assert torch.allclose(out["inputs"], 3.0 * (weights @ TABLE), atol=1e-5)
    # tau -> 0: the soft weights become the one-hot of their argmax, the input that token's embedding
    torch.manual_seed(2)
    cold = quantize(hidden, TABLE, embed, gumbel=True, use_argmax=False, gumbel_tau=1e-4)
    assert torch.allclose(cold["inputs"], embed(cold["indices"]), atol=1e-4)
    # and with a sharp similarity temperature as well, that token is the nearest code by cosine
    torch.manual_seed(3)
    nearest = quantize(hidden, TABLE, embed, temperature=1e-3, gumbel=True, use_argmax=False, gumbel_tau=1e-4)
    assert nearest["indices"].tolist() == [[1, 2, 0]]
    assert torch.allclose(nearest["inputs"], embed(torch.tensor([[1, 2, 0]])), atol=1e-4)


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
    if values.get("use_lora"):  # an adapter records where its base weights load from
        model.save_pretrained(os.path.join(tmp_path, "base"))
        values["model_name_or_path"] = os.path.join(tmp_path, "base")
    return MarkovianVQTrainer(model, MarkovianConfig(**values), train_dataset=data, processing_class=tok)


@torch.no_grad()
def _last_hidden(model, batch):
    """Last-layer hidden states at the placeholder columns, from a plain forward."""
    columns = (batch["segment_ids"] == COT).any(dim=0)
    out = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"],
        output_hidden_states=True,
    )
    return out.hidden_states[-1][:, columns].float()


def _argmax_cosine(hidden, table):
    """Nearest row by cosine similarity (a zero row, e.g. the padding embedding, has similarity 0)."""
    h = hidden / hidden.norm(dim=-1, keepdim=True)
    norms = table.float().norm(dim=-1, keepdim=True)
    t = torch.where(norms > 0, table.float() / norms.clamp_min(1e-30), torch.zeros_like(table.float()))
    return torch.einsum("bld,vd->blv", h, t).argmax(dim=-1)


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
    assert parts["answer_nll"] > 0 and parts["loss"].item() == pytest.approx(parts["answer_nll"].item())
    # codebook loss by hand: mean squared distance of unit h to the unit nearest (cosine) embedding row
    hidden = _last_hidden(trainer.model, batch)
    table = trainer.ref_model.get_input_embeddings().weight.detach()
    unit = torch.nn.functional.normalize(hidden, dim=-1)
    nearest = torch.nn.functional.normalize(table[_argmax_cosine(hidden, table)], dim=-1)
    assert parts["codebook_loss"].item() == pytest.approx(((unit - nearest) ** 2).mean().item(), rel=1e-5)
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
    hidden = trainer._hidden(trainer.model, batch)
    q = trainer._quantize(trainer.ref_model, hidden)
    inputs = trainer.critic_inputs(trainer.ref_model, q["inputs"], q["indices"], batch)
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


@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
def test_vq_evaluation_uses_argmax_codes_of_the_trained_actor(tok, train_data, tmp_path, use_lora):
    torch.set_num_threads(1)
    lora = dict(use_lora=True, lora_r=4, lora_dropout=0.0) if use_lora else {}
    trainer = make_vq_trainer(tok, train_data, tmp_path, max_eval_samples=3, per_device_eval_batch_size=2, **lora)
    model = trainer.model
    if use_lora:  # a trained adapter: lora_B != 0, so adapter on and off disagree
        torch.manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.5)
    questions = list(train_data["question"][:3])
    pad = tok.pad_token_id
    batch = trainer.prompts.actor_rows([trainer.prompts.actor_ids(q) for q in questions], [[pad] * REASON] * 3)
    with trainer.reference_model() as critic:
        table = critic.get_input_embeddings().weight.detach().clone()
    expected = _argmax_cosine(_last_hidden(model, batch), table).tolist()  # the actor's (adapter-on) codes
    if use_lora:
        with model.disable_adapter():
            base_codes = _argmax_cosine(_last_hidden(model, batch), table).tolist()
        assert base_codes != expected  # precondition: the check below can tell them apart
    assert trainer.eval_cots(model, questions) == expected
    records = trainer.evaluation_records(model, train_data)
    assert [r["index"] for r in records] == [0, 1, 2]
    assert [r["rationale"] for r in records] == tok.batch_decode(expected)


def test_vq_hidden_layer_out_of_range_is_an_error(tok, train_data, tmp_path):
    with pytest.raises(ValueError, match="vq_hidden_layer=7"):
        make_vq_trainer(tok, train_data, tmp_path, vq_hidden_layer=7)
