"""The non-finite guard skips a whole optimizer update (gradient accumulation 4), counts updates, stops in a row."""

import copy
import re

import pytest
import torch
from transformers import TrainerCallback

from implicit_reasoning.trainer import LatroConfig, LatroTrainer
from implicit_reasoning.trainer.core.guard import NonFiniteUpdatesError, SkipAwareScheduler, UpdateGuard

GA = 4


class Snapshots(TrainerCallback):
    """Parameters, optimizer state and LR-scheduler state before and after every update."""

    def __init__(self, trainer):
        self.trainer, self.before, self.after = trainer, [], []

    def _state(self):
        trainer = self.trainer
        return {
            "params": {n: p.detach().clone() for n, p in trainer.model.named_parameters()},
            "optimizer": copy.deepcopy(trainer.optimizer.state_dict()),
            "scheduler": copy.deepcopy(trainer.lr_scheduler.state_dict()),
        }

    def on_step_begin(self, args, state, control, **kwargs):
        self.before.append(self._state())

    def on_step_end(self, args, state, control, **kwargs):
        self.after.append(self._state())


def _run(tmp_path, model, tokenizer, dataset, bad_micro_steps, max_steps=3, limit=3):
    args = LatroConfig(
        output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=2, gradient_accumulation_steps=GA,
        max_steps=max_steps, response_length=4, learning_rate=1e-2, logging_steps=1,
        save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, max_nonfinite_updates=limit,
    )
    trainer = LatroTrainer(model, args, train_dataset=dataset, processing_class=tokenizer)
    objective, seen = trainer.compute_objective, {"micro": 0}

    def poisoned(model, batch):
        parts = objective(model, batch)
        if seen["micro"] in bad_micro_steps:
            parts = {**parts, "loss": parts["loss"] * float("nan")}
        seen["micro"] += 1
        return parts

    trainer.compute_objective = poisoned
    snapshots = Snapshots(trainer)
    trainer.add_callback(snapshots)
    return trainer, snapshots


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a):
        return torch.equal(a, b)
    return a == b


def test_one_bad_micro_batch_of_four_skips_the_whole_update(tmp_path, tiny_llama, demo_tokenizer, addition_dataset):
    # update 2 (micro-steps 4..7) has a NaN in its third micro-batch only
    trainer, snaps = _run(tmp_path, tiny_llama, demo_tokenizer, addition_dataset, bad_micro_steps={6})
    trainer.train()
    assert trainer.state.global_step == 3 and trainer.update_guard.skipped_updates == 1
    for key in ("params", "optimizer", "scheduler"):  # bit-identical across the skipped update
        assert _same(snaps.before[1][key], snaps.after[1][key]), key
    for update in (0, 2):  # the others move the weights, the Adam state and the schedule
        assert not _same(snaps.before[update]["params"], snaps.after[update]["params"])
        assert not _same(snaps.before[update]["scheduler"], snaps.after[update]["scheduler"])
    logged = [h["nonfinite_updates"] for h in trainer.state.log_history if "nonfinite_updates" in h]
    assert logged == [0.0, 1.0, 1.0]


def test_four_bad_micro_batches_count_one_update_and_do_not_abort(tmp_path, tiny_llama, demo_tokenizer,
                                                                   addition_dataset):
    trainer, snaps = _run(tmp_path, tiny_llama, demo_tokenizer, addition_dataset, bad_micro_steps={0, 1, 2, 3})
    trainer.train()  # limit 3: one skipped update is far from it
    assert trainer.update_guard.skipped_updates == 1 and trainer.update_guard.in_a_row == 0
    assert _same(snaps.before[0]["params"], snaps.after[0]["params"])
    assert _same(snaps.before[0]["optimizer"], snaps.after[0]["optimizer"])  # no Adam step on zero gradients


def test_updates_in_a_row_reach_the_limit(tmp_path, tiny_llama, demo_tokenizer, addition_dataset):
    # a bad micro-batch in each of updates 1, 2, 3: three skipped updates in a row with limit 3
    trainer, _ = _run(tmp_path, tiny_llama, demo_tokenizer, addition_dataset, bad_micro_steps={1, 7, 8},
                      max_steps=4)
    with pytest.raises(NonFiniteUpdatesError, match="stopped at step 3: 3 non-finite updates in a row"):
        trainer.train()


def test_a_finite_loss_with_a_non_finite_gradient_skips_the_update(tmp_path, tiny_llama, demo_tokenizer,
                                                                    addition_dataset):
    trainer, snaps = _run(tmp_path, tiny_llama, demo_tokenizer, addition_dataset, bad_micro_steps=set())
    seen = {"backward": 0}

    def overflow_in_update_two(grad):  # an overflow in backward, in the second micro-batch of update 2
        seen["backward"] += 1
        return grad * float("inf") if seen["backward"] == GA + 2 else grad

    tiny_llama.model.embed_tokens.weight.register_hook(overflow_in_update_two)
    trainer.train()
    assert trainer.update_guard.skipped_updates == 1
    assert _same(snaps.before[1]["params"], snaps.after[1]["params"])
    assert _same(snaps.before[1]["optimizer"], snaps.after[1]["optimizer"])
    assert not _same(snaps.before[2]["params"], snaps.after[2]["params"])


def test_a_good_update_resets_the_run():
    guard = UpdateGuard(limit=2)
    guard.flag("non-finite reward")
    assert guard.decide(step=1) and guard.in_a_row == 1
    assert not guard.decide(step=2) and guard.in_a_row == 0  # nothing flagged: a good update
    guard.flag("non-finite loss")
    assert guard.decide(step=3)
    guard.flag("non-finite loss")
    with pytest.raises(NonFiniteUpdatesError, match="step 4.*last: non-finite loss"):
        guard.decide(step=4)
    assert guard.state_dict() == {"skipped_updates": 3, "in_a_row": 2}


def test_skip_aware_scheduler_delegates_everything_else():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    inner = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    guard = UpdateGuard(limit=5)
    scheduler = SkipAwareScheduler(inner, guard)
    optimizer.step()  # (torch warns when a scheduler steps before its optimizer ever did)
    guard.flag("non-finite loss")
    guard.decide(step=1)
    scheduler.step()  # a non-finite update: the schedule stays
    assert inner.last_epoch == 0 and scheduler.get_last_lr() == [1.0]
    guard.decide(step=1)
    scheduler.step()
    assert scheduler.last_epoch == 1 and scheduler.get_last_lr() == [0.5]
    guard.hold()
    assert guard.decide(step=2) and guard.skipped_updates == 1
    scheduler.step()  # a held update (nothing to train on): skipped, uncounted, and the schedule goes on
    assert scheduler.state_dict()["last_epoch"] == 2


# ----------------------------------------------------------------------------- every trainer
# One NaN / inf at update 2 (a reward where the trainer has one: LaTRO's and Markovian's log-likelihood rewards,
# PPO's user reward function; the loss for STaR and SFT, which have no numeric reward) skips that update only,
# bit for bit, and is counted; the same every update stops the run with an error naming the field, the
# checkpoints already written kept complete.

ARITHMETIC = "num_terms=2,max_value=5,num_examples=16"
RUN = dict(logging_steps=1, report_to="none", disable_tqdm=True, use_cpu=True, learning_rate=1e-2, seed=0,
           per_device_train_batch_size=4, eval_strategy="no")


def _tiny(tok):
    from implicit_reasoning.demo import build_demo_model

    return build_demo_model(tok, hidden_size=32, intermediate_size=64, num_heads=2, seed=0)


def _poison_call(obj, name, bad, poison):
    """Wrap `obj.name` so that its n-th call's result (1-based) goes through `poison` when `bad(n)`."""
    original, calls = getattr(obj, name), {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        out = original(*args, **kwargs)
        return poison(out) if bad(calls["n"]) else out

    setattr(obj, name, wrapped)


def _nan_loss(trainer, bad):
    _poison_call(trainer, "compute_objective", bad, lambda parts: {**parts, "loss": parts["loss"] * float("nan")})


def _latro(tok, out, bad, **run):
    from implicit_reasoning.data.registry import load_task_dataset

    args = LatroConfig(output_dir=out, rloo_k=2, response_length=4, dataset_name="arithmetic", **RUN, **run)
    rows = load_task_dataset("arithmetic", "train", tok, dataset_config=ARITHMETIC)
    trainer = LatroTrainer(_tiny(tok), args, train_dataset=rows, processing_class=tok)
    # R = log pi(y | x, z) of the rollout; its scores are NaN in the bad rollouts
    _poison_call(trainer, "_policy_scores", bad, lambda scores: {**scores, 3: scores[3] * float("nan")})
    return trainer, "non-finite reward"


def _markovian(tok, out, bad, **run):
    from implicit_reasoning.data.registry import load_markovian_examples
    from implicit_reasoning.trainer import MarkovianConfig, MarkovianTrainer

    args = MarkovianConfig(output_dir=out, rloo_k=2, cot_length=4, rollout_batch_size=8, max_prompt_length=96,
                           **RUN, **run)
    rows = load_markovian_examples("arithmetic", "train", tok, dataset_config="num_terms=3,max_value=20,"
                                   "num_examples=8")
    trainer = MarkovianTrainer(_tiny(tok), args, train_dataset=rows, processing_class=tok)
    rollouts, make_rollout = {"n": 0}, trainer.make_rollout

    def counted(prompts):
        rollouts["n"] += 1
        return make_rollout(prompts)

    trainer.make_rollout = counted
    # R = mean log P(y | x~, CoT) - the critic's baseline: NaN while a bad rollout is scored
    _poison_call(trainer, "_answer_logprob", lambda n: bad(rollouts["n"]), lambda s: s * float("nan"))
    return trainer, "non-finite reward"


def _star(strategy):
    def build(tok, out, bad, **run):
        from implicit_reasoning.data.registry import load_task_dataset
        from implicit_reasoning.trainer import STaRConfig, STaRTrainer
        from implicit_reasoning.trainer.star import trainer as star_trainer

        args = STaRConfig(output_dir=out, num_iterations=1, start_steps=run.pop("max_steps"), step_growth=1.0,
                          samples_per_train_question=2, gen_batch_size=16, response_length=8, train_strategy=strategy,
                          dataset_name="arithmetic", skip_first_validation=True, rationalize=False, **RUN, **run)
        rows = load_task_dataset("arithmetic", "train", tok, dataset_config=ARITHMETIC.replace("16", "8"),
                                 cot_trigger=STaRConfig.cot_trigger)
        trainer = STaRTrainer(_tiny(tok), args, train_dataset=rows, processing_class=tok)
        calls = {"n": 0}

        def half_right(model, prompts, config, batch_size, *a, **k):  # data to train on: correct and wrong samples
            rows = []
            for p in prompts:
                calls["n"] += 1
                terms = [int(t) for t in tok.decode(p).split("Question: ")[1].split("\n")[0].split(" + ")]
                answer = sum(terms) + calls["n"] % 2
                rows.append(tok(f"Answer: {answer}", add_special_tokens=False).input_ids + [tok.eos_token_id])
            width = config.max_new_tokens
            ids = torch.full((len(rows), width), tok.pad_token_id)
            for i, row in enumerate(rows):
                ids[i, : min(len(row), width)] = torch.tensor(row[:width])
            return ids

        star_trainer.generate = half_right  # restored by the fixture below
        _nan_loss(trainer, bad)
        return trainer, "non-finite loss"

    return build


def _ppo(tok, out, bad, **run):
    from implicit_reasoning.trainer import PPOCurriculumConfig, PPOCurriculumTrainer

    calls = {"n": 0}

    def flaky_length_reward(prompts, completions, completion_ids, **kwargs):  # a user's reward function
        calls["n"] += 1
        value = float("inf") if bad(calls["n"]) else 0.0
        return [value + len(ids) / 10 for ids in completion_ids]

    args = PPOCurriculumConfig(output_dir=out, dataset_name="arithmetic", dataset_config=ARITHMETIC, response_length=6,
                               ppo_epochs=1, reward_funcs=["answer_accuracy"], **RUN, **run)
    train = PPOCurriculumTrainer.load_split(args, "train", tok)
    trainer = PPOCurriculumTrainer(_tiny(tok), args, train_dataset=train, processing_class=tok,
                                   reward_funcs=["answer_accuracy", flaky_length_reward])
    return trainer, "non-finite reward from reward function(s) ['flaky_length_reward']"


def _sft(tok, out, bad, **run):
    from implicit_reasoning.data.registry import load_task_dataset
    from implicit_reasoning.trainer import SFTBaselineConfig, SFTBaselineTrainer

    args = SFTBaselineConfig(output_dir=out, dataset_name="arithmetic", **RUN, **run)
    rows = load_task_dataset("arithmetic", "train", tok, dataset_config=ARITHMETIC)
    trainer = SFTBaselineTrainer(_tiny(tok), args, train_dataset=rows, processing_class=tok)
    _nan_loss(trainer, bad)
    return trainer, "non-finite loss"


TRAINERS = {"latro": _latro, "markovian": _markovian, "star_sft": _star("sft"), "star_dpo": _star("dpo"),
            "ppo_curriculum": _ppo, "sft": _sft}


@pytest.fixture
def restore_star_generate():
    from implicit_reasoning.trainer.star import trainer as star_trainer

    original = star_trainer.generate
    yield
    star_trainer.generate = original


def _reasons(trainer) -> list[str]:
    seen, flag = [], trainer.update_guard.flag
    trainer.update_guard.flag = lambda reason="non-finite loss": seen.append(reason) or flag(reason)
    return seen


@pytest.mark.parametrize("name", TRAINERS)
def test_a_non_finite_reward_or_loss_skips_that_update_on_every_trainer(tmp_path, demo_tokenizer, name,
                                                                         restore_star_generate):
    trainer, reason = TRAINERS[name](demo_tokenizer, str(tmp_path), lambda n: n == 2, max_steps=3,
                                     save_strategy="no", max_nonfinite_updates=2)
    reasons, params = _reasons(trainer), []
    snapshot = lambda: {n: p.detach().clone() for n, p in trainer.model.named_parameters()}  # noqa: E731

    class Params(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            params.append([snapshot()])

        def on_step_end(self, args, state, control, **kwargs):
            params[-1].append(snapshot())

    trainer.add_callback(Params())
    trainer.train()
    assert trainer.state.global_step == 3 and trainer.update_guard.skipped_updates == 1
    assert reason in reasons
    before, after = params[1]
    assert all(torch.equal(before[n], after[n]) for n in before)  # update 2: bit-identical
    for update in (0, 2):
        before, after = params[update]
        assert any(not torch.equal(before[n], after[n]) for n in before), update
    logged = [h["nonfinite_updates"] for h in trainer.state.log_history if "nonfinite_updates" in h]
    assert logged == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("name", TRAINERS)
def test_non_finite_updates_in_a_row_stop_every_trainer_and_keep_its_checkpoints(tmp_path, demo_tokenizer, name,
                                                                                  restore_star_generate):
    from implicit_reasoning.trainer.core.checkpoints import incomplete_reason

    trainer, reason = TRAINERS[name](demo_tokenizer, str(tmp_path), lambda n: n >= 2, max_steps=4,
                                     save_strategy="steps", save_steps=1, max_nonfinite_updates=2)
    with pytest.raises(NonFiniteUpdatesError, match=rf"stopped at step 3: 2 non-finite updates in a row "
                                                    rf"\(max_nonfinite_updates=2\); last: .*{re.escape(reason)}"):
        trainer.train()
    for step in (1, 2):  # written before the error: still there and complete
        assert incomplete_reason(str(tmp_path / f"checkpoint-{step}")) is None, step
    assert not (tmp_path / "checkpoint-3").exists()
