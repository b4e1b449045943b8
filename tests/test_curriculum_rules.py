"""Curriculum weight rules, floor and state, checked against plain python / numpy recomputations."""

import json
import math

import numpy as np
import pytest
import torch

from implicit_reasoning.objectives.curriculum import (
    ALPHA,
    CURRICULUM_RULES,
    CurriculumWeights,
    apply_floor,
    draw_sources,
)

# --- independent references ----------------------------------------------------------------


def ref_floor(w, floor):
    """Closed form of water-filling: out_i = max(floor, lam * p_i) with lam making sum(out) = 1."""
    p = [x / sum(w) for x in w]
    k = len(p)
    order = sorted(range(k), key=lambda i: -p[i])
    for m in range(k, 0, -1):  # m = number of entries left free (the m largest)
        lam = (1.0 - floor * (k - m)) / sum(p[i] for i in order[:m])
        smallest_free_ok = lam * p[order[m - 1]] >= floor
        largest_fixed_ok = m == k or lam * p[order[m]] <= floor
        if smallest_free_ok and largest_fixed_ok:
            return [max(floor, lam * x) for x in p]
    return [1.0 / k] * k


def ref_seed(w, mu, var, eta, floor):
    m = np.asarray(mu, dtype=np.float64) + np.asarray(var, dtype=np.float64)
    g = np.gradient(m) if len(m) > 1 else np.zeros(1)
    new = np.clip(np.asarray(w) + eta * g, 0.0, None)
    return ref_floor(list(new) if new.sum() > 0 else [1.0] * len(m), floor)


def ref_exp3(mus, eta, floor, prior=None):
    """All weights of a run of exp3 updates, with scalar python loops; the exploration share follows `prior` (the
    configured weights, uniform by default)."""
    k = len(mus[0])
    prior = [1.0 / k] * k if prior is None else prior
    reward, out = [0.0] * k, []
    for t, mu in enumerate(mus, start=1):
        reward = [ALPHA * r + (1 - ALPHA) * x for r, x in zip(reward, mu)]
        eps = min(1.0 / k, math.sqrt(math.log(k) / (k * t)))
        top = max(eta * r for r in reward)
        exps = [math.exp(eta * r - top) for r in reward]
        out.append(ref_floor([(1 - k * eps) * e / sum(exps) + k * eps * p for e, p in zip(exps, prior)], floor))
    return out


def ref_learning_progress(mus, eta, floor):
    k = len(mus[0])
    w, prog, out = [1.0 / k] * k, [0.0] * k, []
    for step, mu in enumerate(mus):
        if step > 0:
            prog = [ALPHA * p + (1 - ALPHA) * abs(a - b) for p, a, b in zip(prog, mu, mus[step - 1])]
            target = [p / sum(prog) for p in prog] if sum(prog) > 0 else [1.0 / k] * k
            w = ref_floor([(1 - eta) * a + eta * b for a, b in zip(w, target)], floor)
        out.append(w)
    return out


def synthetic_losses(n=40):
    """constant text (mu ~0.5), random tokens (mu ~6.0 constant), patterned text (4.0 -> 1.0)."""
    names = ["constant", "random", "patterned"]
    mus = [[0.5, 6.0, 4.0 - 3.0 * s / (n - 1)] for s in range(n)]
    return names, mus, [[0.01, 0.3, 0.2]] * n


def close(tensor, ref, tol=1e-12):
    return tensor.dtype == torch.float64 and np.allclose(tensor.numpy(), ref, rtol=0, atol=tol)


# --- apply_floor / draw_sources ------------------------------------------------------------


def test_floor_leaves_a_distribution_above_it_unchanged():
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    assert torch.equal(apply_floor(w, 0.1), w)
    assert torch.equal(apply_floor(w, 0.2), w)


def test_floor_normalises_and_respects_floor():
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = int(rng.integers(2, 8))
        w = rng.exponential(size=k) ** 3 * 7.0  # skewed, unnormalised
        floor = float(rng.uniform(0, 1.0 / k))
        out = apply_floor(torch.tensor(w), floor)
        assert abs(float(out.sum()) - 1.0) <= 1e-12 and bool((out >= floor).all())
        assert close(out, ref_floor(list(w), floor))


def test_floor_needs_two_water_filling_rounds():
    w, floor = [0.02, 0.13, 0.85], 0.15
    one_round = [floor, 0.13 * 0.85 / 0.98, 0.85 * 0.85 / 0.98]  # raise 0.02 only
    assert one_round[1] < floor  # a single round is not enough
    assert close(apply_floor(torch.tensor(w), floor), [0.15, 0.15, 0.70])


def test_floor_at_one_over_k_gives_uniform():
    out = apply_floor(torch.tensor([0.9, 0.05, 0.05]), 1 / 3)
    assert close(out, [1 / 3] * 3, tol=1e-15)
    assert torch.equal(apply_floor(torch.tensor([5.0, 0.0, 0.0, 0.0]), 0.25), torch.full((4,), 0.25, dtype=torch.float64))


@pytest.mark.parametrize("floor", [-0.01, 0.34, 1.0])
def test_floor_out_of_range_raises(floor):
    with pytest.raises(ValueError, match="curriculum_floor"):
        apply_floor(torch.tensor([0.2, 0.3, 0.5]), floor)


def test_draw_sources_follows_weights_and_generator():
    w = torch.tensor([0.7, 0.0, 0.3], dtype=torch.float64)
    draws = draw_sources(w, 4000, torch.Generator().manual_seed(0))
    assert len(draws) == 4000 and 1 not in draws and set(draws) == {0, 2}
    assert abs(draws.count(0) / 4000 - 0.7) < 0.03
    assert draws[:50] == draw_sources(w, 50, torch.Generator().manual_seed(0))
    assert draw_sources(w, 0, torch.Generator()) == []


# --- rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_seed_matches_numpy_gradient(k):
    rng = np.random.default_rng(k)
    names = [f"d{i}" for i in range(k)]
    initial = list(rng.uniform(0.5, 1.5, size=k))
    cw = CurriculumWeights(names, "seed", eta=0.3, floor=0.04 if k > 1 else 0.0, initial=initial)
    expected = ref_floor(initial, cw.floor)
    for _ in range(4):
        mu, var = list(rng.uniform(0, 5, size=k)), list(rng.uniform(0, 1, size=k))
        expected = ref_seed(expected, mu, var, 0.3, cw.floor)
        assert close(cw.update(mu, var), expected)
    if k == 1:
        assert cw.weights.tolist() == [1.0]


def test_seed_all_clipped_gives_uniform():
    cw = CurriculumWeights(["a", "b"], "seed", eta=1.0, floor=0.0)
    assert close(cw.update([10.0, 0.0], [0.0, 0.0]), [0.5, 0.5])  # g = [-10, -10]


def test_seed_depends_on_dataset_order():
    mu = {"a": 1.0, "b": 5.0, "c": 2.0}
    var = {"a": 0.1, "b": 0.2, "c": 0.3}

    def run(order):
        cw = CurriculumWeights(order, "seed", eta=0.1, floor=0.0)
        w = cw.update([mu[n] for n in order], [var[n] for n in order])
        return dict(zip(order, w.tolist()))

    first, second = run(["a", "b", "c"]), run(["b", "a", "c"])
    assert any(abs(first[n] - second[n]) > 1e-3 for n in mu)  # not a permutation of each other


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("floor", [0.0, 0.3])
def test_exp3_matches_loop_recomputation(k, floor):
    rng = np.random.default_rng(10 + k)
    mus = [list(rng.uniform(0, 6, size=k)) for _ in range(5)]
    cw = CurriculumWeights([f"d{i}" for i in range(k)], "exp3", eta=1.5, floor=floor)
    expected = ref_exp3(mus, 1.5, floor)
    for mu, ref in zip(mus, expected):
        assert close(cw.update(mu, [0.0] * k), ref)
    assert max(expected[-1]) - min(expected[-1]) > 1e-2  # exploration has decayed: not uniform


def test_exp3_uses_the_configured_weights_until_it_has_learnt_something():
    """eps_t = 1/K leaves nothing to the learnt softmax: the weights are then the configured ones (issue 18: they
    were uniform, so a configured weight never reached a draw); later the exploration share follows them."""
    mus = [[5.0, 1.0, 3.0], [4.0, 2.0, 3.5], [4.5, 1.5, 3.0], [4.0, 1.0, 2.0], [3.0, 1.0, 2.5], [3.5, 0.5, 2.0]]
    cw = CurriculumWeights(list("abc"), "exp3", eta=2.0, floor=0.0, initial=[6.0, 3.0, 1.0])
    expected = ref_exp3(mus, 2.0, 0.0, prior=[0.6, 0.3, 0.1])
    for t, (mu, ref) in enumerate(zip(mus, expected), start=1):
        weights = cw.update(mu, [0.0] * 3)
        assert close(weights, ref)
        if t <= 3:  # 3 ln 3 = 3.3: eps_t = 1/3 for t <= 3
            assert close(weights, [0.6, 0.3, 0.1])
    assert not close(weights, [0.6, 0.3, 0.1])  # t = 6: the learnt part has a share


def test_exp3_favours_the_hardest_dataset():
    names, mus, vars_ = synthetic_losses()
    cw = CurriculumWeights(names, "exp3", eta=1.0, floor=0.05)
    for mu, var in zip(mus, vars_):
        w = cw.update(mu, var)
    assert int(torch.argmax(w)) == names.index("random")
    assert close(w, ref_exp3(mus, 1.0, 0.05)[-1])


def test_learning_progress_favours_the_changing_dataset():
    names, mus, vars_ = synthetic_losses()
    floor = 0.05
    cw = CurriculumWeights(names, "learning_progress", eta=0.2, floor=floor)
    history = [cw.update(mu, var) for mu, var in zip(mus, vars_)]
    assert torch.equal(history[0], torch.full((3,), 1 / 3, dtype=torch.float64))  # first call: unchanged
    for w in history:
        assert bool((w >= floor).all()) and abs(float(w.sum()) - 1) <= 1e-12
    final = history[-1]
    assert int(torch.argmax(final)) == names.index("patterned")
    const = [names.index("constant"), names.index("random")]
    assert all(history[2][i] < history[1][i] for i in const)  # falling...
    assert all(abs(float(final[i]) - floor) < 1e-9 for i in const)  # ...down to the floor
    ref = ref_learning_progress(mus, 0.2, floor)
    assert all(close(w, r) for w, r in zip(history, ref))


def test_learning_progress_first_call_keeps_initial_weights():
    cw = CurriculumWeights(["a", "b"], "learning_progress", eta=0.5, floor=0.1, initial=[3.0, 1.0])
    assert torch.equal(cw.update([1.0, 2.0], [0.0, 0.0]), torch.tensor([0.75, 0.25], dtype=torch.float64))
    assert close(cw.update([1.0, 3.0], [0.0, 0.0]), ref_floor([0.375, 0.625], 0.1))  # P = [0, 0.1]


@pytest.mark.parametrize("rule", CURRICULUM_RULES)
def test_weights_stay_a_floored_distribution(rule):
    rng = np.random.default_rng(7)
    floor = 0.05
    cw = CurriculumWeights(list("abcd"), rule, eta=0.9, floor=floor)
    for _ in range(20):
        w = cw.update(rng.uniform(0, 8, size=4), rng.uniform(0, 3, size=4))
        assert w.dtype == torch.float64 and w.shape == (4,)
        assert abs(float(w.sum()) - 1.0) <= 1e-12 and bool((w >= floor).all())


# --- state, metrics, validation --------------------------------------------------------------


@pytest.mark.parametrize("rule", CURRICULUM_RULES)
@pytest.mark.parametrize("n_updates", [0, 1, 5])
def test_state_dict_json_round_trip_is_exact(rule, n_updates):
    rng = np.random.default_rng(3)
    cw = CurriculumWeights(list("abc"), rule, eta=0.7, floor=0.02, initial=[0.2, 0.3, 0.5])
    for _ in range(n_updates):
        cw.update(rng.uniform(0, 6, size=3), rng.uniform(0, 1, size=3))
    state = json.loads(json.dumps(cw.state_dict()))
    fresh = CurriculumWeights(list("abc"), rule, eta=0.7, floor=0.02, initial=[0.2, 0.3, 0.5])  # the same config
    fresh.load_state_dict(state)
    assert torch.equal(fresh.weights, cw.weights) and fresh.metrics() == cw.metrics()
    mu, var = rng.uniform(0, 6, size=3), rng.uniform(0, 1, size=3)
    assert torch.equal(fresh.update(mu, var), cw.update(mu, var))


def test_load_state_dict_rejects_other_names_or_rule():
    state = CurriculumWeights(list("abc"), "exp3", eta=1.0, floor=0.0).state_dict()
    with pytest.raises(ValueError, match="names"):
        CurriculumWeights(list("abd"), "exp3", eta=1.0, floor=0.0).load_state_dict(state)
    with pytest.raises(ValueError, match="names"):
        CurriculumWeights(list("bac"), "exp3", eta=1.0, floor=0.0).load_state_dict(state)
    with pytest.raises(ValueError, match="rule"):
        CurriculumWeights(list("abc"), "seed", eta=1.0, floor=0.0).load_state_dict(state)


def test_metrics_keys_and_values():
    cw = CurriculumWeights(["x", "y"], "exp3", eta=1.0, floor=0.0, initial=[1.0, 3.0])
    assert cw.metrics() == {"curriculum/weight/x": 0.25, "curriculum/weight/y": 0.75}
    w = cw.update([2.0, 4.5], [0.25, 1.5])
    assert cw.metrics() == {
        "curriculum/weight/x": float(w[0]),
        "curriculum/weight/y": float(w[1]),
        "curriculum/difficulty/x": 2.0,
        "curriculum/difficulty/y": 4.5,
        "curriculum/variance/x": 0.25,
        "curriculum/variance/y": 1.5,
    }
    assert all(type(v) is float for v in cw.metrics().values())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rule": "ucb"}, "curriculum_rule.*learning_progress"),
        ({"eta": -0.1}, "curriculum_eta"),
        ({"rule": "learning_progress", "eta": 0.0}, "curriculum_eta"),
        ({"rule": "learning_progress", "eta": 1.5}, "curriculum_eta"),
        ({"floor": 0.5}, "curriculum_floor"),
        ({"floor": -0.1}, "curriculum_floor"),
        ({"names": ["a", "a", "b"]}, "unique"),
        ({"names": ["a", "", "b"]}, "non-empty"),
        ({"names": []}, "non-empty"),
        ({"initial": [1.0, 2.0]}, "initial"),
        ({"initial": [1.0, -1.0, 2.0]}, "initial"),
        ({"initial": [0.0, 0.0, 0.0]}, "positive sum"),
    ],
)
def test_constructor_validation(kwargs, match):
    args = {"names": ["a", "b", "c"], "rule": "exp3", "eta": 1.0, "floor": 0.1} | kwargs
    with pytest.raises(ValueError, match=match):
        CurriculumWeights(**args)


def test_initial_weights_are_normalised_and_floored():
    cw = CurriculumWeights(["a", "b", "c"], "exp3", eta=2.0, floor=0.1, initial=[0.0, 1.0, 3.0])
    assert close(cw.weights, ref_floor([0.0, 1.0, 3.0], 0.1))
    assert CurriculumWeights(["a", "b"], "exp3", eta=2.0, floor=0.0).weights.tolist() == [0.5, 0.5]


def test_update_validation_names_the_dataset():
    cw = CurriculumWeights(["a", "b", "c"], "seed", eta=1.0, floor=0.0)
    with pytest.raises(ValueError, match="mean_loss.*3"):
        cw.update([1.0, 2.0], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="loss_var.*3"):
        cw.update([1.0, 2.0, 3.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="mean_loss for dataset 'b'"):
        cw.update([1.0, float("nan"), 3.0], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="loss_var for dataset 'c'"):
        cw.update([1.0, 2.0, 3.0], [0.0, 0.0, float("inf")])
    assert cw.t == 0 and cw.metrics() == {f"curriculum/weight/{n}": 1 / 3 for n in "abc"}
