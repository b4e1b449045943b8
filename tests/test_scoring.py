"""The one scoring stack: packing, the LM-head window, float32 log-probs and reducers, by hand."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from implicit_reasoning.objectives.advantages import pack_segments, score_segments
from implicit_reasoning.scoring.logprobs import masked_mean, segment_reduce, selective_log_softmax, token_logprobs
from implicit_reasoning.scoring.packing import pack_rows
from implicit_reasoning.scoring.window import forward_window, score_rows

PAD = 0


class CountingLM(torch.nn.Module):
    """A bigram LM: logits depend only on the current token; counts forward calls and logits columns."""

    def __init__(self, vocab=11):
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab))
        self.calls, self.columns = 0, []

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        self.calls += 1
        self.columns.append(input_ids.shape[1])
        return type("Out", (), {"logits": self.table[input_ids]})()


def test_pack_rows_right_pads_and_labels_segments():
    ids, mask, seg = pack_segments([[[1, 2], [3]], [[4], [5, 6, 7]], [[8], [9]]], pad_token_id=PAD)
    assert ids.tolist() == [[1, 2, 4, 8, PAD], [3, 5, 6, 7, 9]]
    assert seg.tolist() == [[1, 1, 2, 3, 0], [1, 2, 2, 2, 3]]
    assert mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]


def test_pack_rows_aligns_a_segment_and_counts_positions_over_real_tokens():
    rows = pack_rows([[[1, 2], [3]], [[4, 5], [6, 7]], [[8], [9, 10]]], PAD, align=1)
    # prefixes left-padded to width 2: every second segment starts at column 2
    assert rows["input_ids"].tolist() == [[1, 2, 4, 5, 8, PAD], [PAD, 3, 6, 7, 9, 10]]
    assert rows["segment_ids"].tolist() == [[1, 1, 2, 2, 3, 0], [0, 1, 2, 2, 3, 3]]
    assert rows["position_ids"].tolist() == [[0, 1, 2, 3, 4, 4], [0, 0, 1, 2, 3, 4]]
    assert rows["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]]


def test_segment_reduce_and_masked_mean_by_hand():
    logps = torch.tensor([[0.0, -1.0, -2.0, -3.0], [0.0, -4.0, -5.0, 0.0]])
    seg = torch.tensor([[1, 2, 2, 3], [1, 2, 3, 0]])
    assert segment_reduce(logps, seg, 2).tolist() == [-3.0, -4.0]
    assert segment_reduce(logps, seg, 2, "mean").tolist() == [-1.5, -4.0]
    assert segment_reduce(logps, seg, 4, "mean").tolist() == [0.0, 0.0]
    assert float(masked_mean(logps, seg == 2)) == pytest.approx(-7 / 3)
    with pytest.raises(ValueError, match="reduce='max'"):
        segment_reduce(logps, seg, 2, "max")


def test_selective_log_softmax_matches_float64_autograd_in_value_and_gradient():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 11, (3, 5))
    weights = torch.randn(3, 5, dtype=torch.float64)
    expected = torch.log_softmax(logits, -1).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    (expected * weights).sum().backward()
    expected_grad, logits.grad = logits.grad.clone(), None
    ours = selective_log_softmax(logits, index, chunk=2)
    assert ours.dtype == torch.float32
    (ours * weights).sum().backward()
    assert torch.allclose(ours.double(), expected, atol=1e-6)
    assert torch.allclose(logits.grad, expected_grad, atol=1e-6)


def test_token_logprobs_window_convention_by_hand():
    lm = CountingLM()
    ids = torch.tensor([[1, 4, 2]])
    logps = token_logprobs(lm(ids).logits, ids)
    table = torch.log_softmax(lm.table.detach(), dim=-1)
    expected = [0.0, float(table[1, 4]), float(table[4, 2])]
    assert torch.allclose(logps[0].detach(), torch.tensor(expected), atol=1e-6)


def test_forward_window_sends_only_scored_columns_to_the_lm_head():
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    rows = pack_rows([[[1, 2, 3, 4], [5]], [[6, 7], [8, 9]], [[10], [11, 12]]], PAD, align=1)
    scored = rows["segment_ids"] >= 2
    seen = []
    model.lm_head.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    logits, window = forward_window(model, rows, scored)
    # prompts end at column 3 (aligned); the window starts one column earlier and ends at the last real token
    assert seen == [logits.shape[1]] and logits.shape[1] == rows["input_ids"].shape[1] - 3
    full = model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"],
                 position_ids=rows["position_ids"]).logits
    assert torch.allclose(logits, full[:, 3:], atol=1e-5)
    assert torch.equal(window["input_ids"], rows["input_ids"][:, 3:])


def test_score_rows_one_pass_per_chunk_and_chunking_invariant():
    lm = CountingLM()
    ids, mask, seg = pack_segments([[[1, 2], [3], [4, 5]], [[6, 7, 8], [9, 10], [2]], [[3], [4], [5]]], PAD)
    full = score_segments(lm, ids, mask, seg, (2, 3), chunk_size=8)
    assert lm.calls == 1  # both segments from the same single forward
    chunked = score_segments(lm, ids, mask, seg, (2, 3), chunk_size=1)
    assert lm.calls == 1 + 3
    for s in (2, 3):
        assert torch.allclose(full[s], chunked[s], atol=1e-6)
    table = torch.log_softmax(lm.table.detach(), dim=-1)
    # row 0 = [1, 2 | 6, 7, 8 | 3]: rationale tokens 6, 7, 8 predicted from 2, 6, 7
    assert torch.isclose(full[2][0], table[2, 6] + table[6, 7] + table[7, 8], atol=1e-5)
    assert torch.isclose(full[3][0], table[8, 3], atol=1e-5)  # answer counts no rationale token


def test_bf16_model_sums_are_float32_accurate_against_float64():
    """Sums of ~300 bf16-rounded log-probs are off by about a nat; ours must match float64 to 1e-3."""
    config = LlamaConfig(vocab_size=4000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(1, 4000, (n,), generator=gen).tolist() for n in (5, 9)]
    rationales = [torch.randint(1, 4000, (300,), generator=gen).tolist() for _ in range(2)]
    rows = pack_rows([prompts, rationales], PAD, align=1)
    ours = score_rows(model, rows, (2,), chunk_size=1)[2]
    assert ours.dtype == torch.float32
    with torch.no_grad():
        logits = model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"],
                       position_ids=rows["position_ids"]).logits.double()
    logps = torch.log_softmax(logits[:, :-1], -1).gather(-1, rows["input_ids"][:, 1:, None]).squeeze(-1)
    exact = (logps * (rows["segment_ids"][:, 1:] == 2)).sum(dim=1)
    assert exact.abs().min() > 200  # the regime where bf16 sums lose about a nat
    assert torch.allclose(ours.double(), exact, atol=2e-3), (ours, exact)


def test_the_lm_head_window_holds_under_peft_and_ddp_style_wrappers():
    from peft import LoraConfig, get_peft_model

    from implicit_reasoning.scoring.window import accepts_logits_to_keep

    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=2, target_modules=["q_proj"]))

    class Wrapper(torch.nn.Module):  # DDP / DeepSpeed engines: forward(*inputs, **kwargs) over `.module`
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *inputs, **kwargs):
            return self.module(*inputs, **kwargs)

    wrapped = Wrapper(model)
    assert accepts_logits_to_keep(model) and accepts_logits_to_keep(wrapped)
    rows = pack_rows([[[1, 2, 3, 4], [5]], [[6, 7], [8, 9]]], PAD, align=1)
    seen = []
    model.get_base_model().lm_head.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    logits, _ = forward_window(wrapped, rows, rows["segment_ids"] == 2)
    assert seen == [logits.shape[1]] == [rows["input_ids"].shape[1] - 3]


def test_a_chunk_with_nothing_to_score_costs_no_forward_and_sums_to_zero():
    lm = CountingLM()
    rows = pack_rows([[[1, 2], [3]], [[], []]], PAD, align=1)  # every rationale empty (stopped at once)
    assert score_rows(lm, rows, (2,), chunk_size=8)[2].tolist() == [0.0, 0.0] and lm.calls == 0
