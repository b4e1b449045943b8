"""Markovian objective pieces (implicit_reasoning.objectives.markovian) against hand-computed values."""

import math

import pytest
import torch

from implicit_reasoning.objectives.markovian import (
    ANSWER,
    COT,
    EMABaseline,
    MarkovianPrompts,
    RewardHistory,
    ei_keep_mask,
    ei_weights,
    masked_entropy,
    masked_kl,
    policy_gradient_loss,
    ppo_clipped_loss,
    zscore_advantages,
)
from implicit_reasoning.scoring.logprobs import masked_mean, token_logprobs
from implicit_reasoning.scoring.packing import pack_rows

LN2, LN3 = math.log(2.0), math.log(3.0)


# ----------------------------------------------------------------------------- packing
def test_scoring_rows_align_cots_and_count_positions():
    out = pack_rows([[[1, 2], [3]], [[4, 5], [6, 7]], [[8], [8]], [[9], [10, 11]]], pad_token_id=0, align=COT - 1)
    assert out["input_ids"].tolist() == [[1, 2, 4, 5, 8, 9, 0], [0, 3, 6, 7, 8, 10, 11]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1]]
    # left padding does not shift positions: the first real token is position 0
    assert out["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 5], [0, 0, 1, 2, 3, 4, 5]]
    assert (out["segment_ids"] == COT).int().tolist() == [[0, 0, 1, 1, 0, 0, 0]] * 2
    assert (out["segment_ids"] == ANSWER).int().tolist() == [[0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1, 1]]


def test_markovian_prompts_build_the_same_rows_from_text(demo_tokenizer):
    prompts = MarkovianPrompts(demo_tokenizer, "Add.", markovian=True)
    rows = prompts.scoring_rows([prompts.scoring_ids("3 + 4")], [[5, 6]], ["7"])
    ids = rows["input_ids"][0][rows["attention_mask"][0].bool()].tolist()
    assert demo_tokenizer.decode(ids) == "Add. <Redacted>\nReasoning:" + demo_tokenizer.decode([5, 6]) + " Answer: 7"


def test_window_token_logps_are_aligned():
    # logits at column t-1 predict the token at column t
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
    logps = token_logprobs(logits, torch.tensor([[0, 1, 0]]))
    assert torch.allclose(logps, torch.tensor([[0.0, math.log(0.5), math.log(0.25)]]), atol=1e-6)


def test_masked_mean_by_hand():
    values = torch.tensor([[1.0, 2.0, 9.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert masked_mean(values, mask, dim=1).tolist() == [1.5, 0.0]
    assert float(masked_mean(values, mask)) == 1.5


# ----------------------------------------------------------------------- KL / entropy
def _kl_case():
    """Row 0 scores only the token at column 2, predicted by the logits at column 1.

    column 1: actor (1/2, 1/2), critic (1/4, 3/4) -> KL = 0.5 ln(4/3)
    column 2 (misaligned predictor): identical -> 0; column 0 (unmasked): KL((9/10,1/10)||(1/2,1/2)).
    Row 1 is all padding.
    """
    actor = torch.zeros(2, 3, 2)
    critic = torch.zeros(2, 3, 2)
    actor[0, 0] = torch.tensor([math.log(9.0), 0.0])
    critic[0, 1] = torch.tensor([0.0, LN3])
    actor[1] = torch.randn(3, 2)
    mask = torch.tensor([[0, 0, 1], [0, 0, 0]])
    return actor, critic, mask


def test_masked_kl_uses_aligned_positions_and_the_mask():
    actor, critic, mask = _kl_case()
    kl = masked_kl(actor, critic, mask)
    expected = 0.5 * math.log(4.0 / 3.0)
    assert kl[0].item() == pytest.approx(expected, abs=1e-6)
    assert kl[1].item() == 0.0  # padding rows contribute nothing
    # what the reference's bugs would have computed:
    misaligned = masked_kl(actor.roll(-1, dims=1), critic.roll(-1, dims=1), mask)  # logits at t for token t
    assert misaligned[0].item() == pytest.approx(0.0, abs=1e-7)
    unmasked = masked_kl(actor, critic, torch.ones_like(mask))
    kl_col0 = 0.9 * math.log(1.8) + 0.1 * math.log(0.2)
    assert unmasked[0].item() == pytest.approx((kl_col0 + expected) / 2, abs=1e-6)
    assert abs(unmasked[0].item() - expected) > 0.05


def test_masked_kl_is_zero_for_identical_models_and_differentiable():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, requires_grad=True)
    mask = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1]])
    kl = masked_kl(logits, logits.detach(), mask)
    assert torch.allclose(kl, torch.zeros(2), atol=1e-7)
    kl.sum().backward()
    assert torch.allclose(logits.grad, torch.zeros_like(logits), atol=1e-7)  # KL(p || p) is at its minimum

    # differing critic: d KL(softmax(a) || q) / d a = p * (log p - log q - KL), per row / its target count,
    # only at the predicting columns t-1 of the masked targets t; exactly zero everywhere else
    critic = torch.randn(2, 4, 5)
    logits.grad = None
    masked_kl(logits, critic, mask).sum().backward()
    expected = torch.zeros_like(logits)
    with torch.no_grad():
        for row in range(2):
            columns = [t - 1 for t in range(1, 4) if mask[row, t]]
            for c in columns:
                logp, logq = torch.log_softmax(logits[row, c], -1), torch.log_softmax(critic[row, c], -1)
                kl_c = (logp.exp() * (logp - logq)).sum()
                expected[row, c] = logp.exp() * (logp - logq - kl_c) / len(columns)
    assert torch.allclose(logits.grad, expected, atol=1e-6)
    assert logits.grad[0, [0, 1]].abs().sum() > 0 and logits.grad[1, [1, 2]].abs().sum() > 0
    assert logits.grad[0, [2, 3]].abs().sum() == 0 and logits.grad[1, [0, 3]].abs().sum() == 0


def test_masked_entropy_by_hand():
    logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens: H = ln 4
    logits[0, 0] = torch.tensor([100.0, 0.0, 0.0, 0.0])  # near-deterministic: H ~ 0
    assert masked_entropy(logits, torch.tensor([[0, 0, 1]])).item() == pytest.approx(2 * LN2, abs=1e-6)
    assert masked_entropy(logits, torch.tensor([[0, 1, 0]])).item() == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------- advantages
def test_zscore_advantages_by_hand():
    a = zscore_advantages(torch.tensor([1.0, 3.0, 10.0, 10.0]), k=2)
    assert torch.allclose(a, torch.tensor([-1.0, 1.0, 0.0, 0.0]), atol=1e-6)
    std = math.sqrt(14 / 3)  # group [1, 2, 6]: mean 3, population std sqrt(14/3)
    a3 = zscore_advantages(torch.tensor([1.0, 2.0, 6.0]), k=3)
    assert torch.allclose(a3, torch.tensor([-2 / std, -1 / std, 3 / std]), atol=1e-6)


def test_ema_baseline_by_hand_and_state_roundtrip():
    baseline = EMABaseline(0.9)
    a = baseline.advantages(torch.tensor([1.0, 3.0]))  # first batch: b starts at its mean 2
    assert a.tolist() == [-1.0, 1.0] and baseline.value == pytest.approx(2.0)
    a = baseline.advantages(torch.tensor([4.0, 6.0]))  # A uses the old b; b <- 0.9*2 + 0.1*5
    assert a.tolist() == [2.0, 4.0] and baseline.value == pytest.approx(2.3)
    other = EMABaseline(0.5)
    other.load_state_dict({"value": 2.0})
    a = other.advantages(torch.tensor([4.0, 6.0]), batch_mean=10.0)  # mean over all processes
    assert a.tolist() == [2.0, 4.0] and other.value == pytest.approx(6.0)
    assert EMABaseline(0.5).state_dict() == {"value": None}


# ------------------------------------------------------------------ expert iteration
def test_reward_history_mean_std_and_state_roundtrip():
    history = RewardHistory()
    history.update(torch.tensor([1.0, 2.0, 3.0]))
    assert history.mean == pytest.approx(2.0) and history.std == pytest.approx(math.sqrt(2 / 3))
    history.update(torch.tensor([4.0]))
    assert (history.count, history.batches) == (4, 2)
    assert history.mean == pytest.approx(2.5) and history.std == pytest.approx(math.sqrt(1.25))
    restored = RewardHistory()
    restored.load_state_dict(history.state_dict())
    assert restored == history


def test_ei_threshold_and_kept_mask_by_hand():
    history = RewardHistory()
    history.update(torch.tensor([1.0, 2.0]))
    history.update(torch.tensor([3.0, 4.0]))  # mean 2.5, std sqrt(1.25)
    kept, threshold = ei_keep_mask(torch.tensor([3.0, 4.0]), history, ei_std=1.0, warmup=1)
    assert threshold == pytest.approx(2.5 + math.sqrt(1.25))
    assert kept.tolist() == [False, True]
    kept, threshold = ei_keep_mask(torch.tensor([3.0, 4.0]), history, ei_std=0.0, warmup=1)
    assert kept.tolist() == [True, True] and threshold == pytest.approx(2.5)
    # during warm-up (history holds <= warmup batches) nothing is kept
    kept, threshold = ei_keep_mask(torch.tensor([3.0, 4.0]), history, ei_std=0.0, warmup=2)
    assert kept.tolist() == [False, False] and threshold == math.inf


def test_ei_weights_average_over_kept_samples():
    assert ei_weights(torch.tensor([False, True, False, True])).tolist() == [0.0, 2.0, 0.0, 2.0]
    assert ei_weights(torch.tensor([False, False])).tolist() == [0.0, 0.0]
    # data parallel: 2 processes x 4 rows, 1 kept here + 3 kept elsewhere -> every kept row weighs 8 / 4
    assert ei_weights(torch.tensor([True, False, False, False]), total=8, total_kept=4).tolist() == [2.0, 0, 0, 0]
    logps = torch.tensor([[0.0, -1.0], [0.0, -2.0], [0.0, -3.0], [0.0, -5.0]])
    mask = torch.tensor([[0, 1]] * 4)
    loss = policy_gradient_loss(logps, ei_weights(torch.tensor([False, True, False, True])), mask)
    assert loss.item() == pytest.approx((2.0 + 5.0) / 2)  # mean NLL of the two kept samples


# ------------------------------------------------------------------------------ losses
def test_policy_gradient_loss_value_and_gradient():
    logps = torch.tensor([[0.0, -1.0, -3.0], [0.0, -2.0, -2.0]], requires_grad=True)
    mask = torch.tensor([[0, 1, 1], [0, 1, 1]])
    advantages = torch.tensor([1.0, -0.5], requires_grad=True)
    loss = policy_gradient_loss(logps, advantages, mask)
    assert loss.item() == pytest.approx(0.5)  # -mean(1 * -2, -0.5 * -2)
    loss.backward()
    assert torch.allclose(logps.grad, torch.tensor([[0.0, -0.25, -0.25], [0.0, 0.125, 0.125]]))
    assert advantages.grad is None  # A is detached


def test_ppo_ratio_exactly_one_against_itself():
    logps = torch.tensor([[-1.3, -0.2], [-2.0, -0.7]], requires_grad=True)
    out = ppo_clipped_loss(logps, logps.detach(), torch.tensor([2.0, -1.0]), torch.ones(2, 2), 0.2)
    assert out["ratio"].item() == 1.0 and out["clip_fraction"].item() == 0.0
    assert out["loss"].item() == pytest.approx(-0.5)  # -mean(2, -1)
    out["loss"].backward()
    assert torch.allclose(logps.grad, torch.tensor([[-0.5, -0.5], [0.25, 0.25]]))


@pytest.mark.parametrize(
    "ratio, advantage, surrogate, has_grad",
    [
        (1.5, 1.0, 1.2, False),  # clipped at 1 + eps: no gradient
        (1.5, -1.0, -1.5, True),  # pessimistic branch keeps the unclipped term
        (0.5, 1.0, 0.5, True),
        (0.5, -1.0, -0.8, False),  # clipped at 1 - eps
    ],
)
def test_ppo_clipping_by_hand(ratio, advantage, surrogate, has_grad):
    old = torch.tensor([[-1.0]])
    logps = (old + math.log(ratio)).requires_grad_(True)
    out = ppo_clipped_loss(logps, old, torch.tensor([advantage]), torch.ones(1, 1), epsilon=0.2)
    assert out["loss"].item() == pytest.approx(-surrogate, abs=1e-6)
    assert out["ratio"].item() == pytest.approx(ratio)
    assert out["clip_fraction"].item() == (0.0 if has_grad else 1.0)
    out["loss"].backward()
    assert (logps.grad.abs().sum().item() > 0) == has_grad


def test_ppo_ignores_masked_tokens():
    old = torch.zeros(1, 3)
    logps = torch.tensor([[0.0, math.log(1.5), 5.0]])
    out = ppo_clipped_loss(logps, old, torch.tensor([1.0]), torch.tensor([[1, 1, 0]]), 0.2)
    assert out["loss"].item() == pytest.approx(-(1.0 + 1.2) / 2)
