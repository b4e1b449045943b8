"""LaTRO reward / penalty / advantage / loss on a fixed toy batch, by hand."""

import torch

from implicit_reasoning.objectives.latro import latro_loss, latro_rewards, non_stop_penalised

# Two prompts, K=2, prompt-major rows.
R = torch.tensor([-1.0, -3.0, -2.0, -4.0])  # log pi(y|x,z)
POLICY_Z = torch.tensor([-5.0, -6.0, -7.0, -8.0])  # log pi(z|x)
REF_Z = torch.tensor([-5.5, -6.0, -7.0, -7.0])  # log pi_ref(z|x)
STOPPED = torch.tensor([True, False, True, True])


def test_non_stop_penalty_uses_own_group_mean():
    # row 1 did not stop: group 0 mean R = (-1 - 3) / 2 = -2, times 2 -> -4
    assert non_stop_penalised(R, STOPPED, k=2, penalty=2.0).tolist() == [-1.0, -4.0, -2.0, -4.0]
    # the batch mean (-2.5) would have given -5: make sure we do not use it
    assert non_stop_penalised(R, STOPPED, k=2, penalty=2.0)[1] != -5.0


def test_latro_rewards_by_hand():
    out = latro_rewards(R, POLICY_Z, REF_Z, STOPPED, k=2, kl_coef=0.1, penalty_reward_value=2.0)
    assert torch.allclose(out["R"], torch.tensor([-1.0, -4.0, -2.0, -4.0]))
    assert torch.allclose(out["kl"], torch.tensor([0.5, 0.0, 0.0, -1.0]))
    assert torch.allclose(out["r"], torch.tensor([-1.05, -4.0, -2.0, -3.9]))
    assert torch.allclose(out["A"], torch.tensor([2.95, -2.95, 1.9, -1.9]))


def test_latro_rewards_without_penalty_keeps_R():
    out = latro_rewards(R, POLICY_Z, REF_Z, STOPPED, k=2, kl_coef=0.0, non_stop_penalty=False)
    assert torch.allclose(out["r"], R)
    assert torch.allclose(out["A"], torch.tensor([2.0, -2.0, 2.0, -2.0]))


def test_latro_loss_value_and_gradient_by_hand():
    advantages = torch.tensor([2.95, -2.95, 1.9, -1.9])
    z = POLICY_Z.clone().requires_grad_(True)
    y = R.clone().requires_grad_(True)
    out = latro_loss(advantages, z, y, sft_coef=1.0)
    # policy: -mean(A * z) = -(-14.75 + 17.7 - 13.3 + 15.2) / 4 = -1.2125; answer: -mean(y) = 2.5
    assert abs(float(out["policy_loss"].detach()) + 1.2125) < 1e-5
    assert abs(float(out["answer_loss"].detach()) - 2.5) < 1e-6
    assert abs(float(out["loss"].detach()) - 1.2875) < 1e-5
    out["loss"].backward()
    assert torch.allclose(z.grad, -advantages / 4)
    assert torch.allclose(y.grad, torch.full((4,), -0.25))


def test_latro_loss_sft_coef_zero_drops_answer_gradient():
    y = R.clone().requires_grad_(True)
    out = latro_loss(torch.ones(4), POLICY_Z.clone().requires_grad_(True), y, sft_coef=0.0)
    out["loss"].backward()
    assert torch.count_nonzero(y.grad) == 0


def test_advantages_are_detached():
    a = torch.tensor([1.0, -1.0], requires_grad=True)
    out = latro_loss(a, torch.tensor([-1.0, -2.0], requires_grad=True), torch.tensor([-1.0, -1.0]), 1.0)
    out["loss"].backward()
    assert a.grad is None
