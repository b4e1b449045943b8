"""One run per output_dir, and a resume that continues a killed run's logs where its checkpoint left them.

* A live run holds a kernel lock on `output_dir/.implicit_reasoning.lock`: a second run (job runner, Python
  API, every rank of a 2-process launch) fails naming the holder; once the holder is SIGKILLed, its leftover
  file blocks nothing.
* A resume truncates `samples.jsonl` to the checkpoint's step (a real SIGKILL after the checkpoint), and its
  first training log is the uninterrupted run's although the checkpoint fell between two logs.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import torchrun_command
from transformers import TrainerCallback

from implicit_reasoning.data.registry import load_task_dataset
from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer
from implicit_reasoning.pipeline import parse_training_args, run_training
from implicit_reasoning.trainer import LatroConfig, LatroTrainer
from implicit_reasoning.trainer.core.checkpoints import CRASH_ENV
from implicit_reasoning.trainer.core.output_dir import LOCK_FILE, OutputDirLocked, truncate_step_log

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
TIMING_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos"}
HOLDER = ("import sys, time; from implicit_reasoning.trainer.core.output_dir import acquire; acquire(sys.argv[1]); "
          "print('locked', flush=True); time.sleep(600)")


def hold_lock(out: Path) -> subprocess.Popen:
    """A live process holding `out`'s lock (returns once it holds it)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)


def tiny_latro(out: str, tokenizer=None, **overrides) -> LatroTrainer:
    """LaTRO on a tiny model; samples logged at every log (4 rows)."""
    tokenizer = tokenizer or build_demo_tokenizer()
    settings = dict(output_dir=out, rloo_k=2, per_device_train_batch_size=4, response_length=6, learning_rate=1e-2,
                    dataset_name="arithmetic", max_steps=4, logging_steps=1, save_strategy="steps", save_steps=2,
                    report_to="none", disable_tqdm=True, use_cpu=True, seed=3, eval_strategy="no")
    args = LatroConfig(**{**settings, **overrides})
    rows = load_task_dataset("arithmetic", "train", tokenizer, dataset_config="num_terms=2,max_value=5,num_examples=16")
    model = build_demo_model(tokenizer, hidden_size=32, intermediate_size=64, num_heads=2, seed=0)
    return LatroTrainer(model, args, train_dataset=rows, processing_class=tokenizer)


def train_logs(trainer) -> dict[int, dict]:
    return {h["step"]: {k: v for k, v in h.items() if k not in TIMING_KEYS} for h in trainer.state.log_history
            if "loss" in h}


# ----------------------------------------------------------------------------------------------- the lock
def test_a_second_run_is_refused_while_the_first_lives_and_not_once_it_was_killed(tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    flags = ["--trainer", "latro", "--output_dir", str(out), "--model_name_or_path", str(tiny_model_dir),
             "--dataset_name", "arithmetic", "--dataset_config", "num_terms=2,max_value=5,num_examples=8",
             "--max_steps", "1", "--rloo_k", "2", "--per_device_train_batch_size", "2", "--response_length", "4",
             "--report_to", "none", "--use_cpu", "--save_strategy", "no", "--max_eval_samples", "2"]
    holder = hold_lock(out)
    try:
        with pytest.raises(OutputDirLocked, match=rf"in use by another run \(pid {holder.pid} on "):
            run_training(*parse_training_args(flags))
        with pytest.raises(OutputDirLocked, match=f"pid {holder.pid}"):  # the Python API too
            tiny_latro(str(out)).train()
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # the refused runs wrote nothing
    finally:
        kill(holder)
    assert (out / LOCK_FILE).exists()  # the killed run's file is left behind ...
    run_training(*parse_training_args(flags))  # ... and blocks nothing
    assert (out / "run_config.json").exists() and not (out / LOCK_FILE).exists()


LOCKING_RANKS = """
import json, os, sys
from accelerate import PartialState
from implicit_reasoning.trainer.core.output_dir import OutputDirLocked, holds, locked
state = PartialState(cpu=True, backend="gloo")  # as TrainingArguments(use_cpu=True) sets it up
result = {}
try:
    with locked(sys.argv[1], state):
        result["holds"] = holds(sys.argv[1])
        state.wait_for_everyone()
except OutputDirLocked as error:
    result["error"] = str(error)
with open(os.path.join(sys.argv[2], f"rank{state.process_index}.json"), "w") as f:
    json.dump(result, f)
from implicit_reasoning.pipeline import end_distributed
end_distributed()  # as the console command does: a gloo group alive at interpreter exit can abort it (SIGABRT)
"""


@pytest.mark.slow
def test_every_rank_of_a_two_process_run_fails_alike_and_only_rank_0_takes_the_lock(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(LOCKING_RANKS)
    out = tmp_path / "out"

    def launch(name: str) -> dict[int, dict]:
        results = tmp_path / name
        results.mkdir()
        command = torchrun_command(script, out, results)
        done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return {rank: json.loads((results / f"rank{rank}.json").read_text()) for rank in (0, 1)}

    holder = hold_lock(out)
    try:
        busy = launch("busy")
    finally:
        kill(holder)
    assert busy[0]["error"] == busy[1]["error"] and f"pid {holder.pid}" in busy[0]["error"]
    free = launch("free")
    assert free == {0: {"holds": True}, 1: {"holds": False}}


# ------------------------------------------------------------------------------------------------ resume
def test_step_logs_keep_the_rows_up_to_the_step(tmp_path):
    path = tmp_path / "samples.jsonl"
    rows = [{"step": s, "i": i} for s in (1, 2, 3) for i in range(2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3, "cut')  # a row cut by the kill
    assert truncate_step_log(str(path), 2) == 3
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:4]


KILLED_RUN = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from test_output_dir import tiny_latro; "
              "tiny_latro(sys.argv[1]).train()")


def test_a_resume_after_a_sigkill_continues_samples_and_logs_as_the_uninterrupted_run(tmp_path, demo_tokenizer):
    """Killed (SIGKILL) while saving step 4, after steps 3 and 4 logged their samples; resumed from checkpoint-2 in
    the same output_dir (the dead run's lock does not block): samples.jsonl and the logs are the whole run's."""
    whole = tiny_latro(str(tmp_path / "whole"), demo_tokenizer)
    whole.train()
    out = tmp_path / "killed"
    env = {**ENV, CRASH_ENV: "weights@4"}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(out)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    steps = [json.loads(line)["step"] for line in (out / "samples.jsonl").read_text().splitlines()]
    assert steps.count(3) == 4 and steps.count(4) == 4  # logged after checkpoint-2
    resumed = tiny_latro(str(out), demo_tokenizer)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.resumed_from == str(out / "checkpoint-2")
    assert (out / "samples.jsonl").read_text() == (tmp_path / "whole" / "samples.jsonl").read_text()
    assert train_logs(resumed) == train_logs(whole)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = control.should_training_stop or state.global_step == self.step
        return control


def test_the_first_log_after_a_resume_between_two_logs_is_the_uninterrupted_runs(tmp_path, demo_tokenizer):
    """Logs every 2 updates, a checkpoint at update 3: the log of update 4 averages updates 3 and 4 in both runs
    (Trainer's loss and the method's metrics: reward, KL, advantages, ...)."""
    settings = dict(max_steps=4, logging_steps=2, save_steps=3)
    whole = tiny_latro(str(tmp_path / "whole"), demo_tokenizer, **settings)
    whole.train()
    stopped = tiny_latro(str(tmp_path / "run"), demo_tokenizer, **settings)
    stopped.add_callback(StopAt(3))
    stopped.train()
    resumed = tiny_latro(str(tmp_path / "run"), demo_tokenizer, **settings)
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-3"))
    expected, got = train_logs(whole), train_logs(resumed)
    assert sorted(expected) == sorted(got) == [2, 4]
    assert got[4] == pytest.approx(expected[4], rel=1e-6, abs=1e-9)
    assert set(got[4]) >= {"loss", "reward", "kl", "nonfinite_updates"}
