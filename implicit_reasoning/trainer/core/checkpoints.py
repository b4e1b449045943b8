"""Crash-safe checkpoints: a checkpoint counts only once a marker, written last, says it is complete.

transformers' Trainer (5.x) writes `checkpoint-N` in place, file after file (weights, optimizer
and scheduler, scaler, RNG, `trainer_state.json`), then rotates old checkpoints
(`save_total_limit`), and only after that calls `on_save`; its `get_last_checkpoint` takes the
highest-numbered `checkpoint-*` directory whatever it holds. A crash in between left a
checkpoint that looked complete and resumed with the wrong state, or none left to resume from.
`CheckpointMixin` (a base of `BaseTrainer`) orders every save:

1. drop the marker of an older save into the same directory (a resume from an earlier checkpoint);
2. Trainer's own files, with its rotation held back;
3. the method's state, by every callback with a `write_checkpoint(folder)` method
   (`implicit_reasoning_state.json`, the curriculum's frozen copy, STaR's iteration data), after every
   process ran the callbacks' `gather_for_checkpoint()` (the open log window's sums over processes);
4. once every process is done (a barrier): `checkpoint_complete.json`, naming every file and
   its size, each file fsynced first, the marker itself written to a temporary file and renamed;
5. rotation over complete checkpoints only: the one just written and the best one are kept,
   incomplete ones older than it are removed, and an incomplete one never counts as the newest.

`last_complete_checkpoint` resolves `resume_from_checkpoint=True`: the newest complete
checkpoint, with a warning naming every newer one it skipped. `IMPLICIT_REASONING_CRASH_AT=POINT@STEP`
SIGKILLs the process at a named point of the save of step STEP (tests only; unset, it does nothing):
`weights`, `optimizer`, `rng`, `trainer_state`, `method_state`, `marker_tmp`, `marker`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import warnings

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .state import atomic_write, write_text

COMPLETE_FILE = "checkpoint_complete.json"
CRASH_ENV = "IMPLICIT_REASONING_CRASH_AT"
_STEP = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def crash_point(name: str, step: int) -> None:
    """SIGKILL this process when IMPLICIT_REASONING_CRASH_AT is `name@step` (a test hook; a no-op otherwise)."""
    if os.environ.get(CRASH_ENV) == f"{name}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def checkpoint_dirs(folder: str) -> list[tuple[int, str]]:
    """(step, path) of the `checkpoint-N` directories in `folder`, oldest step first."""
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, name)) for name in os.listdir(folder)
             if (m := _STEP.match(name)) and os.path.isdir(os.path.join(folder, name))]
    return sorted(found)


def incomplete_reason(folder: str) -> str | None:
    """None for a complete checkpoint, else why it is not (no marker, a file missing or of another size)."""
    path = os.path.join(folder, COMPLETE_FILE)
    if not os.path.exists(path):
        return f"no {COMPLETE_FILE}: interrupted while being written, or written by an older version"
    try:
        with open(path) as f:
            marker = json.load(f)
        files = marker["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable {COMPLETE_FILE} ({error})"
    match = _STEP.match(os.path.basename(os.path.normpath(folder)))
    if match and marker.get("global_step") != int(match.group(1)):
        return f"{COMPLETE_FILE} is for step {marker.get('global_step')}"
    for name, size in files.items():
        full = os.path.join(folder, name)
        if not os.path.isfile(full):
            return f"{name} is missing"
        if os.path.getsize(full) != size:
            return f"{name} has {os.path.getsize(full)} bytes, {size} when it was saved"
    return None


def last_complete_checkpoint(folder: str) -> str | None:
    """The newest complete checkpoint in `folder` (None if there is none); warns naming each newer one skipped."""
    skipped, chosen = [], None
    for _, path in reversed(checkpoint_dirs(folder)):
        reason = incomplete_reason(path)
        if reason is None:
            chosen = path
            break
        skipped.append(f"{path} ({reason})")
    if skipped:
        warnings.warn(f"skipping incomplete checkpoint(s): {'; '.join(skipped)}. "
                      + (f"Resuming from {chosen}" if chosen else "No complete checkpoint is left"), stacklevel=2)
    return chosen


def mark_complete(folder: str, step: int) -> None:
    """Fsync every file of `folder`, then write the marker that lists them (atomically: temp file + rename)."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            full = os.path.join(root, name)
            relative = os.path.relpath(full, folder)
            if relative == COMPLETE_FILE or name.startswith(".tmp."):
                continue
            with open(full, "rb") as f:
                os.fsync(f.fileno())
            files[relative] = os.path.getsize(full)
    marker = json.dumps({"global_step": step, "files": dict(sorted(files.items()))}, indent=1)
    atomic_write(os.path.join(folder, COMPLETE_FILE), lambda tmp: write_text(tmp, marker),
                 before_replace=lambda: crash_point("marker_tmp", step))
    _fsync_dir(folder)


def rotate(run_dir: str, limit: int | None, current: str, best: str | None) -> None:
    """Keep `current`, `best` and the newest complete checkpoints up to `limit`; drop the rest and stale partial ones."""
    if not limit or limit <= 0:
        return
    found = [(step, os.path.abspath(path)) for step, path in checkpoint_dirs(run_dir)]
    current = os.path.abspath(current)
    current_step = next((step for step, path in found if path == current), None)
    complete = [path for _, path in found if incomplete_reason(path) is None]
    keep = {os.path.abspath(p) for p in (current, best) if p}
    allowed = max(limit, len(keep))
    for path in reversed(complete):
        if len(keep) >= allowed:
            break
        keep.add(path)
    for step, path in found:
        stale = path not in complete and current_step is not None and step < current_step
        if (path in complete and path not in keep) or stale:
            shutil.rmtree(path, ignore_errors=True)


class CheckpointMixin:
    """Trainer's `_save_checkpoint` in the order above (listed before `transformers.Trainer`)."""

    def _save_checkpoint(self, model, trial) -> None:
        step = self.state.global_step
        run_dir = self._get_output_dir(trial=trial)
        folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}")
        if self.args.should_save and os.path.exists(os.path.join(folder, COMPLETE_FILE)):
            os.remove(os.path.join(folder, COMPLETE_FILE))  # this save overwrites an older one
        self.accelerator.wait_for_everyone()
        limit, self.args.save_total_limit = self.args.save_total_limit, None  # rotate once the marker is written
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        crash_point("trainer_state", step)
        for callback in self.callback_handler.callbacks:  # collectives first (every process), then the writes
            if callable(getattr(callback, "gather_for_checkpoint", None)):
                callback.gather_for_checkpoint()
        if self.is_world_process_zero():
            os.makedirs(folder, exist_ok=True)
            for callback in self.callback_handler.callbacks:
                if callable(getattr(callback, "write_checkpoint", None)):
                    callback.write_checkpoint(folder)
        crash_point("method_state", step)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            mark_complete(folder, step)
            crash_point("marker", step)
            rotate(run_dir, limit, folder, self.state.best_model_checkpoint)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        crash_point("weights", self.state.global_step)
        super()._save_optimizer_and_scheduler(output_dir)
        crash_point("optimizer", self.state.global_step)

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        crash_point("rng", self.state.global_step)


def resolve_resume(resume, output_dir: str):
    """`resume_from_checkpoint` as Trainer takes it: True ("True" from the CLI) = the newest complete checkpoint."""
    if resume is True or str(resume).lower() == "true":
        chosen = last_complete_checkpoint(output_dir)
        if chosen is None:
            found = [p for _, p in checkpoint_dirs(output_dir)]
            if found:
                raise ValueError(f"resume_from_checkpoint=True: no complete checkpoint in {output_dir} "
                                 f"(incomplete: {', '.join(found)})")
            raise ValueError(f"resume_from_checkpoint=True: no checkpoint-* directory in {output_dir}")
        return chosen
    if resume is None or str(resume).lower() in ("false", ""):
        return None
    reason = incomplete_reason(str(resume))
    if reason is not None:
        warnings.warn(f"resuming from {resume}, which may be incomplete ({reason}): it is used as asked", stacklevel=3)
    return resume


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
