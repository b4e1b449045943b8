"""The non-finite guard: a whole optimizer update is skipped when any of its micro-batches went bad.

With gradient accumulation an update is several micro-batches. A non-finite loss or reward
in ANY of them (on any process) must leave the update out entirely: parameters, optimizer
state (Adam moments and step count) and learning-rate schedule untouched. The pieces:

* the trainer calls :meth:`UpdateGuard.flag` for a bad micro-batch and back-propagates zero
  in place of its loss, through the same graph (every process keeps making the same collective
  calls; what reaches the gradients is discarded with the update);
* just before the optimizer step (`on_pre_optimizer_step`) :meth:`UpdateGuard.decide`
  agrees on every process (one all-reduce), counts the skipped update and raises after
  `max_nonfinite_updates` skipped updates in a row;
* :func:`guard_optimizer_step` makes the optimizer's `step` a no-op for a skipped update,
  and :class:`SkipAwareScheduler` does the same for the LR scheduler.

An update with nothing to train on (STaR's iteration without a kept sample) is *held*
(:meth:`UpdateGuard.hold`): skipped the same way on every process, not counted, and the LR
schedule advances through it (the run's timeline goes on; only a non-finite update freezes it).

DeepSpeed owns the step: its engine steps inside `backward()` of the update's last micro-batch,
before `on_pre_optimizer_step`. Under DeepSpeed the trainer therefore decides in `compute_loss`
of that micro-batch (:meth:`UpdateGuard.decide` before the backward, `decided_early`), and the
engine's call of the wrapped optimizer's `step` is the no-op: parameters and optimizer state are
left as they were (gradients the engine keeps are not checked: a finite loss with a non-finite
gradient is left to DeepSpeed's fp16 loss scaler).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import TrainerCallback


class NonFiniteUpdatesError(RuntimeError):
    """Raised after `max_nonfinite_updates` skipped updates in a row."""


class UpdateGuard:
    """Counts and decides skipped updates; checkpointed through `state_dict` / `load_state_dict`."""

    def __init__(self, limit: int, any_process: Callable[[bool], bool] = bool):
        self.limit = limit
        self.any_process = any_process  # True on every process when it is True on one
        self.pending = False  # the update being accumulated has a bad micro-batch (this process)
        self.held = False  # skip the update without counting it (nothing to train on: the same on every process)
        self.skip = False  # the update about to be stepped is skipped (all processes agree)
        self.freeze_schedule = False  # ... and the LR schedule stays where it is (a non-finite update)
        self.decided_early = False  # decided before DeepSpeed's step (in compute_loss): the callback keeps it
        self.reasons: list[str] = []
        self.skipped_updates = 0
        self.in_a_row = 0

    def flag(self, reason: str = "non-finite loss") -> None:
        """Mark the update being accumulated as bad (on this process)."""
        self.pending = True
        if reason not in self.reasons:
            self.reasons.append(reason)

    def hold(self) -> None:
        """Skip the update being accumulated without counting it as non-finite (e.g. an empty training set)."""
        self.held = True

    def decide(self, step: int) -> bool:
        """Whether to skip the update about to be stepped; the same answer on every process."""
        bad = self.any_process(self.pending)
        held, self.held = self.held, False
        self.skip, self.freeze_schedule = bad or held, bad
        reasons, self.pending, self.reasons = self.reasons, False, []
        if not bad:
            if not held:  # a good update ends a run of non-finite ones; a held one changes nothing
                self.in_a_row = 0
            return self.skip
        self.skipped_updates += 1
        self.in_a_row += 1
        if self.in_a_row >= self.limit:
            why = "; ".join(reasons) or "a non-finite loss on another process"
            raise NonFiniteUpdatesError(
                f"stopped at step {step}: {self.in_a_row} non-finite updates in a row "
                f"(max_nonfinite_updates={self.limit}); last: {why}. Lower learning_rate or check the data"
            )
        return True

    def decide_early(self, step: int) -> bool:
        """`decide` before DeepSpeed's engine steps (inside the last micro-batch's backward); the callback then keeps it."""
        self.decided_early = True
        return self.decide(step)

    def state_dict(self) -> dict:
        return {"skipped_updates": self.skipped_updates, "in_a_row": self.in_a_row}

    def load_state_dict(self, state: dict) -> None:
        self.skipped_updates = int(state.get("skipped_updates", 0))
        self.in_a_row = int(state.get("in_a_row", 0))


class GuardCallback(TrainerCallback):
    """Runs the guard's decision right before every optimizer step (after gradient clipping).

    A finite loss can still give a non-finite gradient (an overflow in backward): the
    accumulated gradients are checked here too (one device sync per update).
    """

    def __init__(self, guard: UpdateGuard):
        self.guard = guard

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.guard.decided_early:
            self.guard.decided_early = False
            return
        if model is not None and not self.guard.pending and not gradients_finite(model):
            self.guard.flag("non-finite gradient")
        self.guard.decide(state.global_step + 1)


def gradients_finite(model) -> bool:
    """Whether every gradient held in `.grad` is finite (DeepSpeed keeps its own partitions: not seen here)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def guard_optimizer_step(optimizer, guard: UpdateGuard):
    """Make `optimizer.step` a no-op while `guard.skip` is set (an instance attribute: its state_dict is unchanged)."""
    step = optimizer.step

    def guarded_step(*args, **kwargs):
        if guard.skip:
            return None
        return step(*args, **kwargs)

    optimizer.step = guarded_step
    return optimizer


class SkipAwareScheduler:
    """An LR scheduler whose `step` does nothing for a non-finite update (a held one advances it); everything else
    is the wrapped one's."""

    def __init__(self, scheduler, guard: UpdateGuard):
        self.scheduler = scheduler
        self.guard = guard

    def step(self, *args, **kwargs):
        if not self.guard.freeze_schedule:
            self.scheduler.step(*args, **kwargs)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)

    def get_last_lr(self):
        return self.scheduler.get_last_lr()

    def __getattr__(self, name):
        return getattr(self.__dict__["scheduler"], name)
