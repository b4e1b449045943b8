"""Shared rollout utilities against hand-computed values."""

import pytest
import torch

from implicit_reasoning.utils.rollout import (
    find_stop_positions,
    group_zscore,
    pack_segments,
    rloo_advantages,
    score_segments,
    segment_means,
    segment_sums,
    token_logprobs,
    truncate_response,
)

PAD = 0


def test_rloo_advantages_k2_and_k4_by_hand():
    a2 = rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]), k=2)
    assert torch.allclose(a2, torch.tensor([-1.0, 1.0, -1.0, 1.0]))
    # k=4, group [1, 2, 3, 6]: baselines 11/3, 10/3, 9/3, 6/3
    a4 = rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0]), k=4)
    assert torch.allclose(a4, torch.tensor([1 - 11 / 3, 2 - 10 / 3, 0.0, 4.0]))
    assert abs(float(a4.sum())) < 1e-6


def test_rloo_advantages_groups_are_prompt_major():
    # prompt 0 -> rows 0..2, prompt 1 -> rows 3..5; a constant group gets zero advantage
    a = rloo_advantages(torch.tensor([5.0, 5.0, 5.0, 0.0, 3.0, 6.0]), k=3)
    assert torch.allclose(a[:3], torch.zeros(3))
    assert torch.allclose(a[3:], torch.tensor([-4.5, 0.0, 4.5]))


def test_rloo_advantages_errors():
    with pytest.raises(ValueError, match="k >= 2"):
        rloo_advantages(torch.tensor([1.0, 2.0]), k=1)
    with pytest.raises(ValueError, match="multiple of k=2"):
        rloo_advantages(torch.tensor([1.0, 2.0, 3.0]), k=2)


def test_group_zscore_by_hand():
    z = group_zscore(torch.tensor([1.0, 3.0, 10.0, 10.0]), k=2)
    # group 0: mean 2, population std 1 -> (-1, 1); group 1: std 0 -> 0
    assert torch.allclose(z, torch.tensor([-1.0, 1.0, 0.0, 0.0]), atol=1e-6)


def test_truncate_stop_token_at_position_zero():
    out = truncate_response(torch.tensor([[9, 5, 6, 7]]), stop_token_ids=[9], stop_seqs=[], pad_token_id=PAD)
    assert out.tolist() == [[PAD, PAD, PAD, PAD]]


def test_truncate_stop_sequence_found_and_earliest_stop_wins():
    responses = torch.tensor([[5, 6, 7, 8, 9, 4], [5, 9, 7, 8, 4, 4]])
    out = truncate_response(responses, stop_token_ids=[9], stop_seqs=[[7, 8]], pad_token_id=PAD)
    # row 0: sequence (7, 8) starts at 2 before token 9 at 4; row 1: token 9 at 1 before the sequence
    assert out.tolist() == [[5, 6, PAD, PAD, PAD, PAD], [5, PAD, PAD, PAD, PAD, PAD]]


def test_truncate_partial_stop_sequence_at_end_not_counted():
    responses = torch.tensor([[1, 2, 3, 7]])  # only the first token of (7, 8) fits
    out = truncate_response(responses, stop_token_ids=[], stop_seqs=[[7, 8]], pad_token_id=PAD)
    assert out.tolist() == [[1, 2, 3, 7]]
    assert find_stop_positions(responses, [], [[7, 8]]).tolist() == [-1]


def test_truncate_no_stop_unchanged_and_shape_kept():
    responses = torch.tensor([[1, 2, 3], [4, 5, 6]])
    out = truncate_response(responses, stop_token_ids=[9], stop_seqs=[[1, 3], [7, 8, 9, 10]], pad_token_id=PAD)
    assert out.tolist() == responses.tolist()
    assert find_stop_positions(responses, [9], [[5, 6]]).tolist() == [-1, 1]


def test_pack_segments_right_pads_and_labels_segments():
    ids, mask, seg = pack_segments([[[1, 2], [3]], [[4], [5, 6, 7]], [[8], [9]]], pad_token_id=PAD)
    assert ids.tolist() == [[1, 2, 4, 8, PAD], [3, 5, 6, 7, 9]]
    assert seg.tolist() == [[1, 1, 2, 3, 0], [1, 2, 2, 2, 3]]
    assert mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]


def test_segment_sums_and_means():
    logps = torch.tensor([[0.0, -1.0, -2.0, -3.0], [0.0, -4.0, -5.0, 0.0]])
    seg = torch.tensor([[1, 2, 2, 3], [1, 2, 3, 0]])
    assert segment_sums(logps, seg, 2).tolist() == [-3.0, -4.0]
    assert segment_means(logps, seg, 2).tolist() == [-1.5, -4.0]
    assert segment_means(logps, seg, 4).tolist() == [0.0, 0.0]


class CountingLM(torch.nn.Module):
    """A bigram LM: logits depend only on the current token; counts forward calls."""

    def __init__(self, vocab=11):
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab))
        self.calls = 0

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        self.calls += 1
        return type("Out", (), {"logits": self.table[input_ids]})()


def test_token_logprobs_match_log_softmax_by_hand():
    lm = CountingLM()
    ids = torch.tensor([[1, 4, 2]])
    logps = token_logprobs(lm, ids, torch.ones_like(ids))
    table = torch.log_softmax(lm.table.detach(), dim=-1)
    expected = [0.0, float(table[1, 4]), float(table[4, 2])]
    assert torch.allclose(logps[0].detach(), torch.tensor(expected), atol=1e-6)


def test_score_segments_one_pass_per_chunk_and_chunking_invariant():
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
