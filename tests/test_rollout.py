"""Shared rollout utilities against hand-computed values."""

import pytest
import torch

from implicit_reasoning.objectives.advantages import (
    find_stop_positions,
    group_zscore,
    repeat_rows,
    rloo_advantages,
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


def test_repeat_rows_is_prompt_major():
    assert repeat_rows([[1], [2, 3]], 2) == [[1], [1], [2, 3], [2, 3]]
    assert torch.equal(torch.tensor([1, 2]).repeat_interleave(2), torch.tensor(repeat_rows([1, 2], 2)))
