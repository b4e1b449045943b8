"""What a run may do to its `output_dir`: one run at a time, and an earlier run's files kept unless asked.

* **The lock.** A run holds `output_dir/.implicit_reasoning.lock` for its lifetime: an advisory
  kernel lock (`fcntl.flock`) on that file, taken by the global main process (rank 0) and its
  outcome broadcast, so every rank of a second run fails with the same error naming the holder
  (pid, host, start time, command, written into the file). The kernel drops a flock when its process
  ends, however it ends (SIGKILL, OOM kill, a crash): a lock file left by a killed run is *stale*,
  not held, and the next run (a resume into the same directory) takes it. Whether a lock is held is
  therefore never judged from the file's existence or its pid, only from the kernel's lock. Where the
  file system cannot lock (`flock` unsupported, some network mounts) the run warns and goes on unlocked.
  A process takes a lock it already holds again (the job runner, then `train()`, nest).
* **An earlier run.** `previous_run_files` lists what a finished or killed run left (`run_config.json`,
  `trainer_state.json`, `samples.jsonl`, weights, `checkpoint-*`, ...); the job runner refuses a fresh
  run in such a directory unless it resumes or `overwrite_output_dir=True`.
* **Step logs.** `truncate_step_log` keeps the rows of a JSONL step log (`samples.jsonl`) up to the step
  a run starts from: a resume drops what the killed attempt logged after its checkpoint.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
import warnings
from contextlib import contextmanager

LOCK_FILE = ".implicit_reasoning.lock"
PREVIOUS_RUN_FILES = ("run_config.json", "trainer_state.json", "samples.jsonl", "demo_results.json",
                      "model.safetensors", "adapter_model.safetensors", "pytorch_model.bin", "test_generations.jsonl")
PREVIOUS_RUN_PREFIXES = ("checkpoint-", "iteration_", "model-0")

try:
    import fcntl
except ImportError:  # Windows: no flock; runs go on unlocked (with a warning)
    fcntl = None

_held: dict[str, list] = {}  # real path of a locked output_dir -> [fd, lock path, depth] (this process)


class OutputDirLocked(RuntimeError):
    """Another live process holds the output_dir's lock."""


def previous_run_files(output_dir: str) -> list[str]:
    """Names in `output_dir` that an earlier run wrote (empty for a new or empty directory)."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(name for name in os.listdir(output_dir)
                  if name in PREVIOUS_RUN_FILES or name.startswith(PREVIOUS_RUN_PREFIXES))


def refuse_earlier_run(output_dir: str, resuming: bool, overwrite: bool) -> None:
    """A fresh run (no resume, no overwrite_output_dir) in a directory holding an earlier run is an error."""
    found = previous_run_files(output_dir)
    if found and not resuming and not overwrite:
        shown = ", ".join(found[:6]) + (f", ... ({len(found)} in all)" if len(found) > 6 else "")
        raise ValueError(
            f"output_dir {output_dir!r} holds an earlier run ({shown}); a new run would overwrite it. Continue it "
            "with resume_from_checkpoint=True (--resume_from_checkpoint true), pick another output_dir, or set "
            "overwrite_output_dir=True (--overwrite_output_dir true) to replace it"
        )


def _holder(path: str) -> str:
    try:
        with open(path) as f:
            info = json.load(f)
        return (f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its name yet"


def _try_flock(path: str):
    """An fd holding the flock of `path` (the file created if needed), or None when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError:
            os.close(fd)
            raise
        try:  # the holder may have removed the file between our open and flock: lock the file that is there
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def acquire(output_dir: str) -> None:
    """Lock `output_dir` for this process (see the module docstring); `OutputDirLocked` if a live run holds it."""
    key = os.path.realpath(output_dir)
    if key in _held:
        _held[key][2] += 1
        return
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    fd = None
    if fcntl is not None:
        try:
            fd = _try_flock(path)
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            warnings.warn(f"{output_dir}: this file system cannot lock ({error}); the run goes on without the "
                          "output_dir lock: do not start a second run in it", stacklevel=2)
            fd = -1
        if fd is None:
            raise OutputDirLocked(
                f"output_dir {output_dir!r} is in use by another run ({_holder(path)}). Wait for it to end, or pick "
                f"another output_dir. (A run that was killed holds no lock: its leftover {LOCK_FILE} is ignored.)")
    else:
        warnings.warn(f"{output_dir}: no file locking on this platform; do not start a second run in it", stacklevel=2)
        fd = -1
    if fd >= 0:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:500],
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
    _held[key] = [fd, path, 1]


def release(output_dir: str) -> None:
    """Undo one `acquire`; the last one removes the lock file and drops the lock."""
    key = os.path.realpath(output_dir)
    entry = _held.get(key)
    if entry is None:
        return
    entry[2] -= 1
    if entry[2] > 0:
        return
    del _held[key]
    fd, path = entry[0], entry[1]
    if fd < 0:
        return
    try:
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            os.remove(path)  # while still locked: a waiting run then locks a new file, never this one
    except OSError:
        pass
    os.close(fd)


def holds(output_dir: str) -> bool:
    """Whether this process holds `output_dir`'s lock."""
    return os.path.realpath(output_dir) in _held


@contextmanager
def locked(output_dir: str, state=None):
    """Hold `output_dir`'s lock in the block. With several processes (`state`: accelerate's PartialState or an
    Accelerator), the main process takes it and every process raises the same error if it could not."""
    distributed = state is not None and state.num_processes > 1
    error = None
    if state is None or state.is_main_process:
        try:
            acquire(output_dir)
        except OutputDirLocked as caught:
            error = str(caught)
    if distributed:
        from accelerate.utils import broadcast_object_list

        error = broadcast_object_list([error], from_process=0)[0]
    if error is not None:
        raise OutputDirLocked(error)
    try:
        yield
    finally:
        if state is None or state.is_main_process:
            release(output_dir)


def truncate_step_log(path: str, step: int) -> int:
    """Keep the rows of the JSONL file `path` whose `step` is <= `step` (rewritten atomically); rows dropped.

    A row cut short by a kill (not JSON) is dropped too."""
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    kept = []
    for line in lines:
        try:
            row_step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            continue
        if row_step is None or row_step <= step:
            kept.append(line)
    if len(kept) < len(lines):
        from .state import atomic_write, write_text

        text = "".join(line + "\n" for line in kept)
        atomic_write(path, lambda tmp: write_text(tmp, text))
    return len(lines) - len(kept)


def truncate_step_logs(output_dir: str, names, resume: str | None) -> None:
    """Truncate each step log `names` of `output_dir` to the step of the checkpoint `resume` (0 when None)."""
    step = 0
    if resume:
        state = os.path.join(resume, "trainer_state.json")
        if not os.path.exists(state):  # not a Trainer checkpoint: Trainer's resume says so
            return
        with open(state) as f:
            step = int(json.load(f)["global_step"])
    for name in names:
        truncate_step_log(os.path.join(output_dir, name), step)
