"""The non-finite guard skips a whole optimizer update (gradient accumulation 4), counts updates, stops in a row."""

import copy

import pytest
import torch
from transformers import TrainerCallback

from implicit_reasoning.trainer import LatroConfig, LatroTrainer
from implicit_reasoning.trainer.guard import NonFiniteUpdatesError, SkipAwareScheduler, UpdateGuard

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
    guard.skip = True
    scheduler.step()
    assert inner.last_epoch == 0 and scheduler.get_last_lr() == [1.0]
    guard.skip = False
    scheduler.step()
    assert scheduler.last_epoch == 1 and scheduler.get_last_lr() == [0.5]
    assert scheduler.state_dict()["last_epoch"] == 1
