"""The chunked LM head: exact log-probs and gradients without (B, W, V) logits, its fallbacks, its memory."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from implicit_reasoning.scoring import window as scoring
from implicit_reasoning.scoring.lm_head import masked_head_logprobs, positions_per_chunk
from implicit_reasoning.scoring.logprobs import segment_reduce, token_logprobs
from implicit_reasoning.scoring.packing import pack_rows
from implicit_reasoning.scoring.window import chunkable_head, forward_window, window_logprobs

PAD, VOCAB = 0, 53


# ------------------------------------------------------------------------------ helpers
def tiny_llama(tied=False, vocab=VOCAB, **extra):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=tied, pad_token_id=PAD, **extra)
    return LlamaForCausalLM(config)


def tiny_gpt2(tied=True):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64, tie_word_embeddings=tied,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=1)
    return GPT2LMHeadModel(config)


def is_tied(model):
    return model.get_output_embeddings().weight is model.get_input_embeddings().weight


def rows_and_scored():
    """Left-padded prompts aligned on segment 2 ([x; z; y]); z and y scored, y of row 2 empty."""
    g = torch.Generator().manual_seed(1)
    lengths = [(3, 4, 2), (1, 6, 3), (5, 2, 0)]
    segments = [[torch.randint(2, VOCAB, (n[s],), generator=g).tolist() for n in lengths] for s in range(3)]
    rows = pack_rows(segments, PAD, align=1)
    return rows, rows["segment_ids"] >= 2


def reference(model, rows, scored):
    """forward_window + token_logprobs, unscored columns zeroed (window_logprobs' convention)."""
    logits, window = forward_window(model, rows, scored)
    start = int(scored.any(0).nonzero()[0]) - 1
    logps = torch.where(scored[:, start : start + logits.shape[1]], token_logprobs(logits, window["input_ids"]), 0.0)
    return logps, window


def loss_of(logps, window):
    """A LaTRO-like loss: advantages on the rationale sum, the answer sum added."""
    adv = torch.tensor([0.7, -1.3, 0.4])
    return -(adv * segment_reduce(logps, window["segment_ids"], 2)).sum() - segment_reduce(
        logps, window["segment_ids"], 3).sum()


def grads(model, path, rows, scored):
    model.zero_grad(set_to_none=True)
    loss_of(*path(model, rows, scored)).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_paths_match(model, rows, scored):
    with torch.no_grad():
        new, window = window_logprobs(model, rows, scored)
        old, old_window = reference(model, rows, scored)
    assert window.keys() == old_window.keys() and all(torch.equal(window[k], old_window[k]) for k in window)
    torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-5)
    g_new, g_old = grads(model, window_logprobs, rows, scored), grads(model, reference, rows, scored)
    assert g_new.keys() == g_old.keys() and g_new
    for name in g_new:
        torch.testing.assert_close(g_new[name], g_old[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.fixture
def head_calls(monkeypatch):
    """Counts calls of the chunked head from window_logprobs (0: the logits fallback ran)."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return masked_head_logprobs(*args, **kwargs)

    monkeypatch.setattr(scoring, "masked_head_logprobs", spy)
    return calls


# ---------------------------------------------------------------- the chunked function
@pytest.mark.parametrize("chunk", [1, 4, 7, 16, 1000])
@pytest.mark.parametrize("with_bias", [True, False])
def test_chunked_head_matches_float64_log_softmax_and_its_gradients(chunk, with_bias):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 6, 8, generator=g, requires_grad=True)
    weight = torch.randn(VOCAB, 8, generator=g, requires_grad=True)
    bias = torch.randn(VOCAB, generator=g, requires_grad=True) if with_bias else None
    targets = torch.randint(0, VOCAB, (3, 6), generator=g)
    mask = torch.rand(3, 6, generator=g) < 0.6  # 11 positions: no chunk size above divides them but 1
    coeff = torch.randn(3, 6, generator=g, dtype=torch.float64)

    logps, entropy = masked_head_logprobs(hidden, weight, bias, targets, mask, chunk=chunk, with_entropy=True)
    (logps.double() * coeff).sum().backward()
    mine = [hidden.grad, weight.grad] + ([bias.grad] if with_bias else [])

    leaves = [t.detach().double().requires_grad_() for t in [hidden, weight] + ([bias] if with_bias else [])]
    logits = leaves[0] @ leaves[1].T + (leaves[2] if with_bias else 0)
    full = torch.log_softmax(logits, dim=-1)
    want = torch.where(mask, full.gather(-1, targets.unsqueeze(-1)).squeeze(-1), 0.0)
    (want * coeff).sum().backward()

    assert logps.dtype == torch.float32 and entropy.dtype == torch.float32
    torch.testing.assert_close(logps.double(), want.detach(), rtol=1e-5, atol=1e-5)
    want_entropy = torch.where(mask, -(full.exp() * full).sum(-1), 0.0)
    torch.testing.assert_close(entropy.double(), want_entropy.detach(), rtol=1e-5, atol=1e-5)
    for got, leaf in zip(mine, leaves):
        torch.testing.assert_close(got.double(), leaf.grad, rtol=1e-4, atol=1e-5)
    assert not hidden.grad[~mask].any()  # unscored positions never reach the head


def test_chunk_default_keeps_a_chunk_of_logits_near_64_mib():
    assert positions_per_chunk(151936) == 110
    assert positions_per_chunk(10**9) == 1


# ------------------------------------------------------------------ window_logprobs
@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2], ids=["llama", "gpt2"])
@pytest.mark.parametrize("tied", [True, False])
def test_window_logprobs_matches_forward_window_with_and_without_grad(build, tied, head_calls):
    model = build(tied=tied)
    assert is_tied(model) == tied
    rows, scored = rows_and_scored()
    assert rows["attention_mask"][:, 0].tolist() == [0, 0, 1]  # left padding
    assert_paths_match(model, rows, scored)
    assert head_calls  # the chunked path, not the fallback


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2], ids=["llama", "gpt2"])
def test_final_hidden_states_are_what_the_head_consumes(build):
    """The body's last_hidden_state (read by the hook) and hidden_states[-1] are both post final norm
    (Llama's norm, GPT-2's ln_f) in this transformers: the head maps them to the model's logits."""
    model = build().eval()
    rows, _ = rows_and_scored()
    kwargs = {"input_ids": rows["input_ids"], "attention_mask": rows["attention_mask"]}
    head = model.get_output_embeddings()
    with torch.no_grad():
        out = model(**kwargs, output_hidden_states=True)
        last_column, hooked, head_dtype = scoring._forward_final_hidden(model, kwargs, head)
        assert head_dtype == torch.float32
        torch.testing.assert_close(head(out.hidden_states[-1]), out.logits)
        torch.testing.assert_close(head(hooked), out.logits)
        torch.testing.assert_close(last_column, out.logits[:, -1:])


@pytest.mark.parametrize("autocast", [False, True], ids=["bf16-weights", "fp32-under-bf16-autocast"])
def test_chunked_head_in_bfloat16_reduces_in_float32(autocast):
    g = torch.Generator().manual_seed(0)
    dtype = torch.float32 if autocast else torch.bfloat16
    hidden = torch.randn(20, 16, generator=g).to(dtype).requires_grad_()
    weight = torch.randn(VOCAB, 16, generator=g).to(dtype).requires_grad_()
    targets = torch.randint(0, VOCAB, (20,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logps, _ = masked_head_logprobs(hidden, weight, None, targets, torch.ones(20, dtype=torch.bool), chunk=6)
        logps.sum().backward()
    logits = hidden.detach().bfloat16().double() @ weight.detach().bfloat16().double().T
    want = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert logps.dtype == torch.float32 and hidden.grad.dtype == weight.grad.dtype == dtype
    torch.testing.assert_close(logps.double(), want, rtol=0, atol=0.1)  # bf16 rounding of the matmul only


def test_chunked_head_multiplies_in_the_dtype_of_accelerates_autocast_inside_forward(head_calls):
    """Trainer(bf16=True) = accelerate wraps model.forward in a bf16 autocast (and casts outputs to
    float32): the model's own head multiplies in bf16, but autocast is off again when the chunked
    head runs. It must take bf16 from the head's output, not float32 from the weight."""
    from accelerate.utils import convert_outputs_to_fp32

    model = tiny_llama(vocab=997)
    rows, scored = rows_and_scored()
    with torch.no_grad():
        fp32_logps, _ = window_logprobs(model, rows, scored)
    forward = model.forward
    model.forward = convert_outputs_to_fp32(torch.autocast("cpu", dtype=torch.bfloat16)(forward))
    with torch.no_grad():
        mixed, _ = window_logprobs(model, rows, scored)
        want, _ = reference(model, rows, scored)  # the model's own bf16 head, log-softmax in float32
    assert len(head_calls) == 2  # both runs took the chunked path (no fallback under mixed precision)
    torch.testing.assert_close(mixed, want, rtol=0, atol=1e-5)
    assert (fp32_logps - want).abs().max() > 20 * 1e-5  # a float32 head would have been told apart


def test_window_logprobs_entropy_matches_the_logits_path(monkeypatch):
    model = tiny_llama()
    rows, scored = rows_and_scored()
    with torch.no_grad():
        _, window = window_logprobs(model, rows, scored, entropy=True)
        monkeypatch.setattr(scoring, "chunkable_head", lambda model: None)
        _, fallback = window_logprobs(model, rows, scored, entropy=True)
    assert window["token_entropy"].abs().sum() > 0
    torch.testing.assert_close(window["token_entropy"], fallback["token_entropy"])


def test_lora_model_takes_the_chunked_path_through_its_own_call(head_calls):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    for name, p in model.named_parameters():  # non-zero B so the adapter changes the logits
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    rows, scored = rows_and_scored()
    assert chunkable_head(model) is not None
    assert_paths_match(model, rows, scored)
    assert head_calls and calls  # chunked, and the peft wrapper's __call__ ran


# ------------------------------------------------------------------------ fallbacks
class ScaledHead(torch.nn.Module):
    """A non-Linear output embedding: the chunked head would miss its scale."""

    def __init__(self, linear):
        super().__init__()
        self.linear = linear

    def forward(self, hidden):
        return 2.0 * self.linear(hidden)


def softcapped_model():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                          final_logit_softcapping=2.0, pad_token_id=PAD, bos_token_id=1, eos_token_id=1)
    return Gemma2ForCausalLM(config)


def non_linear_head_model():
    model = tiny_llama()
    model.lm_head = ScaledHead(model.lm_head)
    return model


def zero3_like_model():
    model = tiny_llama()
    model.lm_head.weight.ds_id = 7
    return model


@pytest.mark.parametrize("build", [softcapped_model, non_linear_head_model, zero3_like_model])
def test_inexact_heads_fall_back_to_logits_and_still_match(build, head_calls):
    model = build()
    rows, scored = rows_and_scored()
    assert chunkable_head(model) is None
    assert_paths_match(model, rows, scored)
    assert not head_calls


def test_scaled_logits_config_falls_back():
    assert chunkable_head(tiny_llama(logits_scaling=4.0)) is None
    assert chunkable_head(tiny_llama(logits_scaling=1.0)) is not None


class LogitsScaledAfterTheHead(LlamaForCausalLM):
    """Transforms logits in its own forward, unannounced by the config: only the runtime check sees it."""

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, logits_to_keep=0, **kwargs):
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              logits_to_keep=logits_to_keep, **kwargs)
        out.logits = 2.0 * out.logits
        return out


class HidingBody(torch.nn.Module):
    """A transformer body whose output carries no hidden states where a body's should be."""

    def __init__(self, body):
        super().__init__()
        self.inner = body

    def forward(self, **kwargs):
        return None, self.inner(**kwargs).last_hidden_state


class BodyHidingLlama(LlamaForCausalLM):
    """Its body (``base_model``) yields no final hidden states: the hook captures nothing."""

    @property
    def base_model(self):
        return self.hiding

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, logits_to_keep=0, **kwargs):
        hidden = self.hiding(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)[1]
        return CausalLMOutputWithPast(logits=self.lm_head(hidden[:, -logits_to_keep:]))


def logits_scaled_model():
    model = tiny_llama()
    model.__class__ = LogitsScaledAfterTheHead
    return model


def hidden_less_model():
    model = tiny_llama()
    model.__class__ = BodyHidingLlama
    model.hiding = HidingBody(model.model)
    return model


@pytest.mark.parametrize("build", [logits_scaled_model, hidden_less_model])
def test_hidden_states_that_do_not_reproduce_the_logits_fall_back(build, head_calls):
    """The one-column runtime check: the logits path runs (a second forward, with a warning)."""
    model = build()
    rows, scored = rows_and_scored()
    assert chunkable_head(model) is not None
    with pytest.warns(UserWarning, match="reproduce the logits"):
        assert_paths_match(model, rows, scored)
    assert not head_calls


# --------------------------------------------------------------------------- memory
MEMORY_SCRIPT = r"""
import gc, json, os, resource, torch
from transformers import LlamaConfig, LlamaForCausalLM
from implicit_reasoning.scoring.window import forward_window, token_logprobs, window_logprobs
torch.set_num_threads(1)
torch.manual_seed(0)
config = LlamaConfig(vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512)
model = LlamaForCausalLM(config)
B, T = 8, 256
rows = {"input_ids": torch.randint(0, 151936, (B, T)), "attention_mask": torch.ones(B, T, dtype=torch.long)}
scored = torch.ones(B, T, dtype=torch.bool)
scored[:, 0] = False

def old(model, rows, scored):
    logits, window = forward_window(model, rows, scored)
    return token_logprobs(logits, window["input_ids"]), window

from implicit_reasoning.analysis.memory import start_cpu_peak, status_mb

def added_peak(path, grad):
    model.zero_grad(set_to_none=True)
    before = start_cpu_peak()  # gc + malloc_trim, then the kernel's peak RSS reset to the current RSS (MB)
    with torch.set_grad_enabled(grad):
        logps, _ = path(model, rows, scored)
        if grad:
            logps.sum().backward()
    del logps
    return (status_mb("VmHWM") - before) * 2**20  # this step's own peak over its start, bytes

# smallest expected peaks first, so each larger step sets a new process peak
out = {"new_nograd": added_peak(window_logprobs, False), "new_grad": added_peak(window_logprobs, True),
       "old_nograd": added_peak(old, False)}  # the old grad pass (2.7 GB, 10 s) would only add time
print(json.dumps(out))
"""


def test_chunked_head_memory_stays_under_a_quarter_of_the_full_logits():
    """151,936-token vocabulary, B=8, T=256: full float32 logits are 1.24 GB. Measured as each step's peak RSS
    over its RSS at the start (the kernel's peak reset per step, freed heap handed back first)."""
    full_logits = 8 * 255 * 151936 * 4
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    added = json.loads(result.stdout.strip().splitlines()[-1])
    print({k: f"{v / 2**20:.0f} MiB" for k, v in added.items()})
    assert added["new_nograd"] < full_logits / 4
    assert added["new_grad"] < full_logits / 4
    # the old path DOES exceed the bound (the test can fail): it builds the full logits
    assert added["old_nograd"] > full_logits / 4


def test_a_bf16_trainer_run_takes_the_chunked_head_in_bf16(tmp_path, tiny_llama, demo_tokenizer, addition_dataset,
                                                           monkeypatch):
    """LatroTrainer(bf16=True) end to end: every scoring and grad pass goes through the chunked head (no
    fallback warning), multiplying in bf16 as the model's own head does under accelerate's autocast."""
    import warnings

    from implicit_reasoning.trainer import LatroConfig, LatroTrainer

    dtypes = []

    def spy(*args, **kwargs):
        dtypes.append(kwargs.get("compute_dtype"))
        return masked_head_logprobs(*args, **kwargs)

    monkeypatch.setattr(scoring, "masked_head_logprobs", spy)
    args = LatroConfig(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, max_steps=1,
                       report_to="none", use_cpu=True, disable_tqdm=True, response_length=4, bf16=True,
                       save_strategy="no")
    trainer = LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="no final hidden states")
        trainer.train()
    assert dtypes and torch.bfloat16 in dtypes  # the grad pass, under accelerate's autocast
    assert set(dtypes) <= {torch.bfloat16, torch.float32}
