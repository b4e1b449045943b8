"""Tests for the offline demo tokenizer and model (implicit_reasoning.demo)."""

import hashlib
import os
import subprocess
import sys
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer, demo_corpus

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROMPT = "Question: 12 + 35 + 8\nLet's think step by step.\n"
RATIONALE = "12 + 35 = 47. 47 + 8 = 55."
RESPONSE = " The answer is 55."


@pytest.fixture(scope="module")
def tok():
    return build_demo_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return build_demo_model(tok)


def _fingerprint(tokenizer) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


def _example_ids(tok, prompt=PROMPT, rationale=RATIONALE, response=RESPONSE):
    p = tok(prompt).input_ids
    z = tok(rationale).input_ids
    y = tok(response).input_ids
    return p, z, y, p + z + y + [tok.eos_token_id]


# --------------------------------------------------------------------- corpus
def test_corpus_is_deterministic_and_covers_demo_strings():
    a, b = demo_corpus(), demo_corpus()
    assert a == b
    assert demo_corpus(seed=1) != a
    assert len(demo_corpus(num_examples=10)) < len(a)
    text = "\n".join(a)
    for s in ["Question: ", "Let's think step by step.\n", " The answer is ", "Answer: ",
              "\nAnswer: ", "Reasoning:", "<Redacted>", "#### ", "(-", " = ", " + "]:
        assert s in text, s
    for n in (-300, -299, -1, 0, 1, 99, 100, 299, 300):
        assert str(n) in text


# ------------------------------------------------------------------ tokenizer
def test_tokenizer_is_deterministic(tok):
    again = build_demo_tokenizer()
    assert again.get_vocab() == tok.get_vocab()
    assert _fingerprint(again) == _fingerprint(tok)


def test_tokenizer_is_deterministic_across_processes(tok):
    code = (
        "import hashlib; from implicit_reasoning.demo import build_demo_tokenizer; "
        "t = build_demo_tokenizer(); "
        "print(hashlib.sha256(t.backend_tokenizer.to_str().encode()).hexdigest())"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345", RAYON_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == _fingerprint(tok)


def test_vocab_size_and_special_tokens(tok):
    assert 400 <= len(tok) <= 600
    assert (tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token) == ("<pad>", "<s>", "</s>", "<unk>")
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    for s in ("<pad>", "<s>", "</s>", "<unk>"):
        assert len(tok(s).input_ids) == 1  # registered as whole tokens
    assert tok.chat_template is None


def test_encode_adds_no_special_tokens(tok):
    specials = {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}
    for kwargs in ({}, {"add_special_tokens": True}, {"add_special_tokens": False}):
        ids = tok(PROMPT, **kwargs).input_ids
        assert not specials & set(ids)
        assert ids == tok.encode(PROMPT, **kwargs)
    batch = tok([PROMPT, RATIONALE]).input_ids
    assert all(not specials & set(ids) for ids in batch)


def test_round_trip_decode(tok):
    texts = demo_corpus(num_examples=300, seed=7) + [
        PROMPT, RATIONALE, RESPONSE, PROMPT + RATIONALE + RESPONSE,
        "The answer is", " The answer is", "Answer:", " Answer: (-12)", "\nAnswer: 42",
        "12 + (-5) = 7. 7 + (-30) = (-23).", "  two  spaces\tand tab\n\n", "héllo ✓ 🙂 naïve",
        "Produce minimal text which will help you answer the question. <Redacted>\nReasoning:",
        "-300 -1 0 1 300 1485 123456", "",
    ]
    for t in texts:
        ids = tok(t).input_ids
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == t, repr(t)
    # eos appended by the caller is dropped with skip_special_tokens
    _, _, _, full = _example_ids(tok)
    assert tok.decode(full, skip_special_tokens=True) == PROMPT + RATIONALE + RESPONSE
    assert tok.decode(full) == PROMPT + RATIONALE + RESPONSE + "</s>"


def test_small_numbers_are_single_tokens(tok):
    for n in range(100):
        assert len(tok(str(n)).input_ids) == 1, n
        assert len(tok(f" {n}").input_ids) == 1, n
    # negatives are "(-" + the unsigned number + ")" (with "Ġ(-" after a space)
    assert tok.convert_ids_to_tokens(tok("(-47)").input_ids) == ["(-", "47", ")"]
    assert tok.convert_ids_to_tokens(tok(" (-47)").input_ids) == ["Ġ(-", "47", ")"]
    assert tok(" (-47)").input_ids[1] == tok("47").input_ids[0]


def test_separate_tokenization_matches_joint(tok):
    p, z, y, _ = _example_ids(tok)
    assert p + z + y == tok(PROMPT + RATIONALE + RESPONSE).input_ids
    for t in demo_corpus(num_examples=200, seed=3)[:200]:
        if "\nLet's think step by step.\n" in t and " The answer is" in t:
            prompt, rest = t.split("\nLet's think step by step.\n")
            prompt += "\nLet's think step by step.\n"
            rationale, answer = rest.split(" The answer is")
            answer = " The answer is" + answer
            assert tok(prompt).input_ids + tok(rationale).input_ids + tok(answer).input_ids == tok(t).input_ids


def test_stop_strings_tokenize_stably(tok):
    with_space = tok(" The answer is").input_ids
    bare = tok("The answer is").input_ids
    assert len(with_space) == 3 and len(bare) == 3 and with_space != bare
    assert with_space[1:] == bare[1:]  # " answer", " is" shared; only "The" vs " The" differs
    # " The answer is" keeps its ids whatever precedes it
    for prefix in ["", "55.", "47 + 8 = 55.", "(-3).", "x", "55. ", "\n", "Answer"]:
        ids = tok(prefix + " The answer is 55.").input_ids
        assert ids[len(tok(prefix).input_ids):][:3] == with_space, prefix
    # "The answer is" keeps its ids after "." or a newline (after a space it *becomes* " The answer is")
    for prefix in ["55.", "(-3).", "\n", "55.\n"]:
        ids = tok(prefix + "The answer is").input_ids
        assert ids[-3:] == bare, prefix
    assert tok("55. The answer is").input_ids[-3:] == with_space
    print("\nids 'The answer is' =", bare, " ' The answer is' =", with_space,
          " 'Answer:' =", tok("Answer:").input_ids, " ' Answer:' =", tok(" Answer:").input_ids)


# ---------------------------------------------------------------------- model
def test_model_config_and_size(tok, model):
    cfg = model.config
    assert cfg.model_type == "llama"
    assert cfg.vocab_size == len(tok)
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (0, 1, 2)
    gen = model.generation_config
    assert (gen.pad_token_id, gen.bos_token_id, gen.eos_token_id) == (0, 1, 2)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\ndemo model parameters: {n_params}")
    assert n_params < 2_000_000


def test_model_init_is_seeded_and_keeps_global_rng(tok):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = build_demo_model(tok, seed=0)
    after = torch.rand(3)
    assert torch.equal(expected, after)  # global RNG untouched
    b = build_demo_model(tok, seed=0)
    c = build_demo_model(tok, seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.embed_tokens.weight"], sc["model.embed_tokens.weight"])


def test_model_forward_shape_and_loss(tok, model):
    p, _, _, full = _example_ids(tok)
    input_ids = torch.tensor([full])
    labels = input_ids.clone()
    labels[0, : len(p)] = -100  # loss on rationale + answer + eos only
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=labels)
    assert out.logits.shape == (1, len(full), len(tok))
    assert torch.isfinite(out.loss)
    # random init: loss close to log(V)
    assert abs(out.loss.item() - torch.log(torch.tensor(float(len(tok)))).item()) < 1.0


def test_generate_smoke(tok, model):
    tok_left = build_demo_tokenizer()
    tok_left.padding_side = "left"
    enc = tok_left([PROMPT, "Question: 3 + 4 + 5\nLet's think step by step.\n"], return_tensors="pt", padding=True)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=5, do_sample=True, pad_token_id=tok.pad_token_id)
    assert out.shape[0] == 2 and 1 <= out.shape[1] - enc.input_ids.shape[1] <= 5


def test_save_and_load_offline(tok, model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    saved_tok = build_demo_tokenizer(save_dir=str(tmp_path))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").exists() and (tmp_path / "config.json").exists()

    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert tok2.get_vocab() == saved_tok.get_vocab() == tok.get_vocab()
    assert (tok2.pad_token_id, tok2.bos_token_id, tok2.eos_token_id, tok2.unk_token_id) == (0, 1, 2, 3)
    assert tok2(PROMPT).input_ids == tok(PROMPT).input_ids  # still no bos/eos after reload
    assert tok2.decode(tok2(PROMPT + RATIONALE).input_ids) == PROMPT + RATIONALE
    assert tok2.chat_template is None

    _, _, _, full = _example_ids(tok)
    x = torch.tensor([full])
    with torch.no_grad():
        assert torch.allclose(model(x).logits, model2(x).logits, atol=1e-6)
    assert model2.config.pad_token_id == 0 and model2.config.eos_token_id == 2


def test_train_step_speed(tok):
    """Forward + backward of a 64 x 40 batch must cost < 0.5 CPU-seconds (one thread).

    Measured as the calling thread's CPU time with torch on one thread, so that other jobs on a shared
    machine (which stretch wall time many-fold) do not decide the outcome; the best of a few steps.
    """
    threads = torch.get_num_threads()
    m = build_demo_model(tok)
    m.train()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(4, len(tok), (64, 40), generator=g)

    def step():
        t0 = time.thread_time()
        m(input_ids=x, labels=x).loss.backward()
        m.zero_grad(set_to_none=True)
        return time.thread_time() - t0

    try:
        torch.set_num_threads(1)
        step()  # warm-up
        times = [step() for _ in range(5)]
    finally:
        torch.set_num_threads(threads)
    print(f"\nforward+backward 64x40, 1 thread: {[round(t, 3) for t in times]} CPU-s")
    assert min(times) < 0.5, times
