"""Scoring that reuses generation: raw per-token log-probs recorded while sampling, and the answer
scored by continuing generation's KV cache, against an independent full forward over [x; z; y]."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GenerationConfig, LlamaConfig, LlamaForCausalLM

from implicit_reasoning.generation.sampling import sampling_config
from implicit_reasoning.objectives.advantages import kept_lengths
from implicit_reasoning.runtime.kv_cache import output_cache
from implicit_reasoning.scoring.scored_generation import generate_scored

VOCAB, PAD, EOS = 40, 0, 1
PROMPTS = [[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15], [16, 17, 18, 19]]  # ragged: left padding
ANSWERS = [[20, 21], [22], [23, 24, 25], [26, 27, 28, 29], [30]]


def llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=PAD, eos_token_id=EOS)
    return LlamaForCausalLM(config).eval()


def gpt2():  # learned absolute positions: a wrong position id would show
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64, eos_token_id=EOS)
    return GPT2LMHeadModel(config).eval()


def full_pass(model, prompt, z, answer):
    """log pi(z | x) and log pi(y | x, z) from one plain forward over the unpadded [x; z; y] (float64 softmax)."""
    ids = torch.tensor([prompt + z + answer])
    with torch.no_grad():
        logps = torch.log_softmax(model(ids).logits[0, :-1].double(), -1).gather(-1, ids[0, 1:, None])[:, 0]
    start = len(prompt) - 1
    return logps[start : start + len(z)].sum().item(), logps[start + len(z) :].sum().item()


def run(model, stops=(EOS,), stop_seqs=(), batch_size=2, kept=None, **sampling):
    config = sampling_config(10, PAD, list(stops), **sampling)
    torch.manual_seed(1)
    kept = kept or (lambda t: kept_lengths(t, list(stops), [list(s) for s in stop_seqs]))
    out = generate_scored(model, PROMPTS, config, batch_size, [list(s) for s in stop_seqs], ANSWERS, kept)
    return out, kept(out.tokens)


@pytest.mark.parametrize("build", [llama, gpt2])
@pytest.mark.parametrize("sampling", [dict(), dict(temperature=1.7, top_k=5), dict(temperature=0.6, top_p=0.8)])
def test_recorded_and_continued_logprobs_equal_a_full_forward(build, sampling):
    model = build()
    out, kept = run(model, stops=(EOS, 3, 4), **sampling)  # frequent stops: rows of different lengths
    assert len(set(kept.tolist())) > 1
    for i, (prompt, answer) in enumerate(zip(PROMPTS, ANSWERS)):
        z = out.tokens[i, : kept[i]].tolist()
        rationale, answer_logp = full_pass(model, prompt, z, answer)
        # raw (temperature 1, unwarped) log-probs: the sampling warpers must not leak in
        assert out.token_logps[i, : kept[i]].sum().item() == pytest.approx(rationale, abs=1e-4)
        assert out.answer_logps[i].item() == pytest.approx(answer_logp, abs=1e-4)


def test_stop_sequences_an_empty_rationale_and_rows_cut_before_the_end():
    model = llama()
    torch.manual_seed(1)
    first = generate_scored(model, PROMPTS, sampling_config(10, PAD, [EOS]), 2).tokens
    seq = first[1, 3:5].tolist()  # a stop sequence row 1 is known to sample (same seed, same draws up to it)
    # rows whose first token is even keep nothing: the answer then follows the prompt directly
    cut = lambda t: torch.where(t[:, 0] % 2 == 0, 0, kept_lengths(t, [EOS], [seq]))  # noqa: E731
    torch.manual_seed(1)
    out = generate_scored(model, PROMPTS, sampling_config(10, PAD, [EOS]), 2, [seq], ANSWERS, cut)
    kept = cut(out.tokens)
    assert (kept == 0).any() and kept[1] <= 3 and (kept == 10).any()
    for i, (prompt, answer) in enumerate(zip(PROMPTS, ANSWERS)):
        _, answer_logp = full_pass(model, prompt, out.tokens[i, : kept[i]].tolist(), answer)
        assert out.answer_logps[i].item() == pytest.approx(answer_logp, abs=1e-4)


def test_min_new_tokens_bans_eos_in_sampling_but_not_in_the_recorded_logprobs():
    model = llama()
    config = sampling_config(6, PAD, [EOS], min_new_tokens=6)
    torch.manual_seed(1)
    out = generate_scored(model, PROMPTS, config, 8)
    assert not (out.tokens == EOS).any()  # the ban shaped sampling
    for i, prompt in enumerate(PROMPTS):
        rationale, _ = full_pass(model, prompt, out.tokens[i].tolist(), [])
        assert out.token_logps[i].sum().item() == pytest.approx(rationale, abs=1e-4)  # eos mass kept


def test_the_models_own_generation_config_changes_nothing():
    model = llama()
    baseline, _ = run(model)
    model.generation_config = GenerationConfig(top_k=3, repetition_penalty=1.5, temperature=0.3, do_sample=True)
    again, _ = run(model)
    assert torch.equal(baseline.tokens, again.tokens) and torch.equal(baseline.token_logps, again.token_logps)


def test_lora_policy_scores_like_its_full_pass():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                               init_lora_weights=False)).eval()
    out, kept = run(model, stops=(EOS, 3))
    for i, (prompt, answer) in enumerate(zip(PROMPTS, ANSWERS)):
        rationale, answer_logp = full_pass(model, prompt, out.tokens[i, : kept[i]].tolist(), answer)
        assert out.token_logps[i, : kept[i]].sum().item() == pytest.approx(rationale, abs=1e-4)
        assert out.answer_logps[i].item() == pytest.approx(answer_logp, abs=1e-4)


def test_a_cache_that_cannot_be_continued_is_refused_and_its_samples_kept(monkeypatch):
    import implicit_reasoning.scoring.scored_generation as scored
    from implicit_reasoning.generation.sampling import left_pad

    model = llama()
    ids, mask = left_pad(PROMPTS[:2], PAD)
    config = GenerationConfig(**{**sampling_config(4, PAD, None).to_dict(), "return_dict_in_generate": True})
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    new = out.sequences[:, ids.shape[1]:]
    extra = torch.cat([new, new[:, :1]], dim=1)  # one step more than the cache holds
    with pytest.raises(scored.CacheReuseError, match="cache holds"):
        scored.continue_cache(model, output_cache(out), mask, ids, extra, torch.tensor([1, 1]), ANSWERS[:2], PAD)

    expected, _ = run(model)

    def refuse(*args, **kwargs):
        raise scored.CacheReuseError("not here")

    monkeypatch.setattr(scored, "continue_cache", refuse)
    fallback, _ = run(model)
    assert fallback.failure == "not here" and fallback.token_logps is None and fallback.answer_logps is None
    assert torch.equal(fallback.tokens, expected.tokens)  # the samples are kept: only their scoring falls back
