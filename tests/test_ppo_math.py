"""PPO math against plain-python recomputations: GAE, shaped rewards, clipped losses, whitening, KL control."""

import math

import pytest
import torch

from implicit_reasoning.objectives import ppo
from implicit_reasoning.objectives.advantages import gae
from implicit_reasoning.objectives.rewards import (
    answer_accuracy,
    call_rewards,
    combine_rewards,
    import_reward,
    nonfinite_reward_names,
    repetition_penalty,
    repetition_rate,
)


def _ragged(batch=5, width=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, width + 1, (batch,), generator=g)
    lengths[0] = width  # one full row
    mask = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
    rewards = torch.randn(batch, width, generator=g, dtype=torch.float64)
    values = torch.randn(batch, width, generator=g, dtype=torch.float64)
    return rewards, values, mask, lengths.tolist()


def _gae_loop(rewards, values, lengths, gamma, lam):
    """Textbook GAE, one row at a time, over its valid tokens only."""
    adv = torch.zeros_like(rewards)
    ret = torch.zeros_like(rewards)
    for i, n in enumerate(lengths):
        last = 0.0
        for t in reversed(range(n)):
            next_v = values[i, t + 1].item() if t + 1 < n else 0.0
            delta = rewards[i, t].item() + gamma * next_v - values[i, t].item()
            last = delta + gamma * lam * last
            adv[i, t] = last
            ret[i, t] = last + values[i, t].item()
    return adv, ret


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (0.99, 1.0), (0.5, 0.0)])
def test_gae_matches_a_plain_loop_on_ragged_rows(gamma, lam):
    for seed in range(3):
        rewards, values, mask, lengths = _ragged(seed=seed)
        adv, ret = gae(rewards, values, mask, gamma, lam)
        ref_adv, ref_ret = _gae_loop(rewards, values, lengths, gamma, lam)
        torch.testing.assert_close(adv.double(), ref_adv, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ret.double(), ref_ret, atol=1e-5, rtol=1e-5)
        assert (adv[~mask] == 0).all() and (ret[~mask] == 0).all()


def test_gae_with_gamma_lambda_one_is_reward_to_go_minus_value():
    rewards, values, mask, lengths = _ragged(seed=4)
    adv, ret = gae(rewards, values, mask, 1.0, 1.0)
    for i, n in enumerate(lengths):
        for t in range(n):
            to_go = rewards[i, t:n].sum().item()
            assert adv[i, t].item() == pytest.approx(to_go - values[i, t].item(), abs=1e-5)
            assert ret[i, t].item() == pytest.approx(to_go, abs=1e-5)


def test_gae_runs_over_tokens_not_over_the_batch():
    """The reference code discounted across the batch index: rows must not leak into each other."""
    rewards = torch.zeros(3, 4)
    rewards[0, 3] = 1.0
    mask = torch.ones(3, 4, dtype=torch.bool)
    adv, _ = gae(rewards, torch.zeros(3, 4), mask, 1.0, 1.0)
    assert adv[0].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert (adv[1:] == 0).all()


def test_gae_rejects_a_left_padded_mask():
    mask = torch.tensor([[False, True, True]])
    with pytest.raises(ValueError, match="right-padded"):
        gae(torch.zeros(1, 3), torch.zeros(1, 3), mask, 1.0, 0.95)


def test_shaped_rewards_put_the_score_at_the_last_valid_token():
    logps = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-1.5, -1.0, -3.0], [-2.0, -1.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    rewards, kl = ppo.shaped_rewards(torch.tensor([10.0, 20.0]), logps, ref, mask, kl_coef=0.5)
    assert kl.tolist() == [[0.5, -1.0, 0.0], [1.0, 0.0, 0.0]]
    assert rewards.tolist() == [[-0.25, 0.5, 10.0], [-0.5 + 20.0, 0.0, 0.0]]


def test_policy_and_value_losses_match_the_formulas():
    g = torch.Generator().manual_seed(1)
    logps, old = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    adv = torch.randn(4, 6, generator=g)
    terms = ppo.policy_loss_terms(logps, old, adv, cliprange=0.2)
    for i in range(4):
        for t in range(6):
            rho = math.exp(logps[i, t].item() - old[i, t].item())
            a = adv[i, t].item()
            expected = max(-a * rho, -a * min(max(rho, 0.8), 1.2))
            assert terms["loss"][i, t].item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
            assert terms["approxkl"][i, t].item() == pytest.approx(0.5 * math.log(rho) ** 2, rel=1e-5, abs=1e-7)
            assert terms["clipped"][i, t].item() == float(-a * min(max(rho, 0.8), 1.2) > -a * rho)
    v, v_old, ret = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    vterms = ppo.value_loss_terms(v, v_old, ret, cliprange_value=0.3)
    for i in range(4):
        for t in range(6):
            clipped = v_old[i, t].item() + min(max(v[i, t].item() - v_old[i, t].item(), -0.3), 0.3)
            expected = 0.5 * max((v[i, t].item() - ret[i, t].item()) ** 2, (clipped - ret[i, t].item()) ** 2)
            assert vterms["loss"][i, t].item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_policy_gradient_is_zero_where_the_ratio_is_clipped_in_the_advantage_direction():
    logps = torch.tensor([0.5, -0.5, 0.0], requires_grad=True)  # rho = e^.5 (clipped), e^-.5 (clipped), 1
    terms = ppo.policy_loss_terms(logps, torch.zeros(3), torch.tensor([1.0, -1.0, 1.0]), cliprange=0.2)
    terms["loss"].sum().backward()
    assert logps.grad.tolist() == pytest.approx([0.0, 0.0, -1.0])


def test_masked_total_over_micro_batches_equals_the_minibatch_token_mean():
    """Gradient accumulation: each micro-batch divides by the minibatch's token count, so the sum is exact."""
    g = torch.Generator().manual_seed(2)
    values = torch.randn(6, 5, generator=g)
    mask = torch.rand(6, 5, generator=g) > 0.4
    full = (values * mask).sum() / mask.sum()
    count = float(mask.sum())
    parts = sum(ppo.masked_total(values[i : i + 2], mask[i : i + 2], count) for i in range(0, 6, 2))
    assert parts.item() == pytest.approx(full.item(), rel=1e-6)


def test_whiten_with_moments_summed_over_processes_equals_whitening_the_union():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(3, 4, generator=g), torch.randn(2, 4, generator=g)
    ma, mb = torch.rand(3, 4, generator=g) > 0.3, torch.rand(2, 4, generator=g) > 0.3
    moments = ppo.masked_moments(a, ma) + ppo.masked_moments(b, mb)
    union = torch.cat([a[ma], b[mb]]).double()
    expected_a = (a.double() - union.mean()) / torch.sqrt(union.var(unbiased=True) + 1e-8)
    torch.testing.assert_close(ppo.whiten(a, ma, moments).double(), expected_a * ma, atol=1e-6, rtol=1e-6)


def test_kl_controller_moves_toward_the_target():
    up = ppo.KLController(0.1, adaptive=True, target=6.0, horizon=100)
    assert up.update(12.0, 10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))  # error clipped at +0.2
    down = ppo.KLController(0.1, adaptive=True, target=6.0, horizon=100)
    assert down.update(5.4, 10) == pytest.approx(0.1 * (1 - 0.1 * 10 / 100))
    fixed = ppo.KLController(0.1, adaptive=False, target=6.0, horizon=100)
    assert fixed.update(100.0, 10) == 0.1
    restored = ppo.KLController(0.3, adaptive=True, target=6.0, horizon=100)
    restored.load_state_dict(up.state_dict())
    assert restored.value == up.value


def test_explained_variance_and_entropy():
    ret = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    assert ppo.explained_variance(ret.clone(), ret, mask) == pytest.approx(1.0)
    assert ppo.explained_variance(torch.zeros_like(ret) + 2.0, ret, mask) == pytest.approx(0.0)
    logits = torch.zeros(2, 3, 5)
    assert torch.allclose(ppo.token_entropy(logits), torch.full((2, 3), math.log(5)))


def test_repetition_rate_and_penalty():
    assert repetition_rate([1, 2, 3, 4, 5]) == 0.0
    assert repetition_rate([7, 7, 7, 7, 7]) == pytest.approx((1.0 + 2 / 3) / 2)  # 4/4 repeats, 2 of 3 trigrams seen
    assert repetition_rate([1, 2, 3, 1, 2, 3]) == pytest.approx((0.0 + 1 / 4) / 2)
    assert repetition_penalty([], [], completion_ids=[[1, 2], [3, 3]]) == [0.0, -0.5]


def test_answer_accuracy_uses_the_rows_checker_and_skips_raw_text():
    values = answer_accuracy(["q"] * 3, ["The answer is 12.", "The answer is (B).", "some text"],
                             groundtruth=["12", "C", ""], source=["gsm8k", "arc_challenge", "wikitext"])
    assert values == [1.0, 0.0, None]


def test_call_and_combine_rewards_handle_none_weights_and_nan():
    def half(prompts, completions, **kwargs):
        return [0.5, None, float("nan")]

    def one(prompts, completions, **kwargs):
        return [1.0, 1.0, 1.0]

    values, applicable = call_rewards([half, one], ["half", "one"], ["p"] * 3, ["a", "b", "c"], [[1]] * 3, {})
    assert applicable.tolist() == [[True, False, True], [True, True, True]]
    assert nonfinite_reward_names(values, applicable, ["half", "one"]) == ["half"]
    total = combine_rewards(values[:, :2], applicable[:, :2], [2.0, 3.0])
    assert total.tolist() == [4.0, 3.0]
    with pytest.raises(ValueError, match="'short' returned 1 values"):
        call_rewards([lambda **kw: [1.0]], ["short"], ["p"] * 2, ["a", "b"], [[1]] * 2, {})


def test_import_reward_by_path_and_a_clear_error():
    func = import_reward("implicit_reasoning.objectives.rewards:repetition_penalty")
    assert func is repetition_penalty
    with pytest.raises(ValueError, match="neither a built-in"):
        import_reward("no_such_module:f")


def test_the_repetition_penalty_docstring_gives_the_formulas_values():
    """The docstrings' examples run: -0.75 for 4 copies of one token and -0.992 for 64, not -1 (issue 18)."""
    import doctest

    from implicit_reasoning.objectives import rewards

    result = doctest.testmod(rewards, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0
    copies = lambda n: rewards.repetition_penalty([""], [""], [[7] * n])[0]  # noqa: E731
    assert copies(4) == -0.75 and copies(64) == pytest.approx(-(1 + 61 / 62) / 2)


def test_answer_accuracy_without_a_source_is_an_error_not_none():
    from implicit_reasoning.objectives import rewards

    assert rewards.answer_accuracy(["q"], ["The answer is 4."], groundtruth=["4"], source=["gsm8k"]) == [1.0]
    assert rewards.answer_accuracy(["q"], ["Once upon a time"], groundtruth=[""], source=["wikitext"]) == [None]
    with pytest.raises(ValueError, match="answer_accuracy needs the rows' `source`"):
        rewards.answer_accuracy(["q"], ["The answer is 4."], groundtruth=["4"])


def test_the_value_backbone_takes_the_policys_peft_config_relative_to_the_backbone():
    from peft import LoraConfig

    from implicit_reasoning.trainer.ppo_curriculum.value_model import backbone_peft_config

    config = LoraConfig(r=2, target_modules=["model.layers.0.self_attn.q_proj", "v_proj"], task_type="CAUSAL_LM")
    out = backbone_peft_config(config, "model")
    assert out.task_type is None and out.target_modules == {"layers.0.self_attn.q_proj", "v_proj"} and out.r == 2
    assert config.task_type == "CAUSAL_LM"  # the policy's own config is left alone
    assert backbone_peft_config(LoraConfig(target_modules="all-linear"), "model").target_modules == "all-linear"
