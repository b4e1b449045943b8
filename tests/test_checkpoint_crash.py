"""Crash safety of checkpoints: a PPO run SIGKILLed at every point of a checkpoint save resumes from the newest
COMPLETE checkpoint and ends exactly where the uninterrupted run ends; rotation and resolution of
`resume_from_checkpoint=True` never prefer an incomplete checkpoint."""

import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer
from implicit_reasoning.trainer import PPOCurriculumConfig, PPOCurriculumTrainer
from implicit_reasoning.trainer.core.checkpoints import COMPLETE_FILE, CRASH_ENV, last_complete_checkpoint, rotate
from implicit_reasoning.trainer.core.state import STATE_FILE

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STEPS, CRASH_STEP = 4, 3
TIMING_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos"}


def tiny_job(out: str, tokenizer=None) -> PPOCurriculumTrainer:
    """PPO with adaptive KL (method state that changes every update: the KL coefficient) on a tiny model, a
    checkpoint after every update, only the newest kept (the hardest rotation)."""
    tokenizer = tokenizer or build_demo_tokenizer()
    args = PPOCurriculumConfig(
        output_dir=out, max_steps=STEPS, logging_steps=1, report_to=[], use_cpu=True, save_strategy="steps",
        save_steps=1, save_total_limit=1, disable_tqdm=True, per_device_train_batch_size=4, learning_rate=1e-3,
        dataset_name="arithmetic", dataset_config="num_terms=2,max_value=5,num_examples=32", response_length=6,
        ppo_epochs=1, reward_funcs=["answer_accuracy", "repetition_penalty"], adaptive_kl=True, kl_coef=0.2,
        kl_target=0.01, kl_horizon=10, seed=3)
    model = build_demo_model(tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    train = PPOCurriculumTrainer.load_split(args, "train", tokenizer)
    return PPOCurriculumTrainer(model, args, train_dataset=train, processing_class=tokenizer)


def step_metrics(trainer) -> dict[int, dict]:
    return {h["step"]: {k: v for k, v in h.items() if k not in TIMING_KEYS}
            for h in trainer.state.log_history if "loss" in h}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, demo_tokenizer):
    trainer = tiny_job(str(tmp_path_factory.mktemp("whole")), demo_tokenizer)
    trainer.train()
    metrics = step_metrics(trainer)
    assert len({m["objective/kl_coef"] for m in metrics.values()}) == STEPS  # the method state moves every update
    return metrics, {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


def crashed_run(out: Path, point: str) -> subprocess.CompletedProcess:
    """The job in a fresh process that SIGKILLs itself at `point` of the save of step CRASH_STEP."""
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); from test_checkpoint_crash import tiny_job; " \
           f"tiny_job({str(out)!r}).train()"
    env = {**os.environ, CRASH_ENV: f"{point}@{CRASH_STEP}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def assert_resumes_like_the_whole_run(out: Path, reference, demo_tokenizer, expected_step: int):
    """Resumed with resume_from_checkpoint=True: from checkpoint-`expected_step`, naming every newer one it skips."""
    metrics, params = reference
    skipped = [p.name for p in out.glob("checkpoint-*") if int(p.name.split("-")[1]) > expected_step]
    resumed = tiny_job(str(out), demo_tokenizer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed.train(resume_from_checkpoint=True)
    named = [str(w.message) for w in caught if "incomplete checkpoint" in str(w.message)]
    assert len(named) == (1 if skipped else 0) and all(f"{out / name} (" in named[0] for name in skipped)
    assert resumed.resumed_from == str(out / f"checkpoint-{expected_step}")
    got = step_metrics(resumed)
    assert sorted(got) == list(range(1, STEPS + 1))
    for step in got:  # steps up to the checkpoint come from its trainer_state.json, the rest were trained again
        assert got[step] == pytest.approx(metrics[step], rel=1e-5, abs=1e-7), step
    for name, value in resumed.model.named_parameters():
        torch.testing.assert_close(value.detach(), params[name], atol=1e-6, rtol=1e-5, msg=name)


# the save of step 3 in order: weights (Trainer's save_model), optimizer + scheduler, RNG, trainer_state.json,
# our method state, the marker's temp file; a kill at any of them leaves checkpoint-3 incomplete
@pytest.mark.slow
@pytest.mark.parametrize("point", ["weights", "optimizer", "rng", "trainer_state", "method_state", "marker_tmp"])
def test_a_kill_inside_a_save_resumes_from_the_previous_complete_checkpoint(point, tmp_path, reference,
                                                                          demo_tokenizer):
    out = tmp_path / "run"
    result = crashed_run(out, point)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert (out / "checkpoint-3").is_dir() and not (out / "checkpoint-3" / COMPLETE_FILE).exists()
    # save_total_limit=1: Trainer alone would already have deleted checkpoint-2 here (from trainer_state on)
    assert (out / "checkpoint-2" / COMPLETE_FILE).exists() and (out / "checkpoint-2" / STATE_FILE).exists()
    assert_resumes_like_the_whole_run(out, reference, demo_tokenizer, expected_step=2)


@pytest.mark.slow
def test_a_kill_after_the_marker_resumes_from_the_new_checkpoint(tmp_path, reference, demo_tokenizer):
    out = tmp_path / "run"
    result = crashed_run(out, "marker")
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert (out / "checkpoint-2").is_dir()  # killed before the rotation: both are complete, the newer wins
    assert_resumes_like_the_whole_run(out, reference, demo_tokenizer, expected_step=3)


@pytest.mark.slow
def test_a_kill_at_a_random_moment_resumes_from_the_newest_complete_checkpoint(tmp_path, reference, demo_tokenizer):
    out = tmp_path / "run"
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); from test_checkpoint_crash import tiny_job; " \
           f"tiny_job({str(out)!r}).train()"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (out / "checkpoint-1" / COMPLETE_FILE).exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.005)
    delay = random.Random(os.getpid()).uniform(0.0, 0.1)  # within steps 2-4 (~0.05 s each), often inside a save
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        newest = last_complete_checkpoint(str(out))
    if newest is None or newest.endswith(f"checkpoint-{STEPS}"):
        pytest.skip(f"the kill {delay:.3f} s after checkpoint-1 came {'too early' if newest is None else 'too late'}")
    assert_resumes_like_the_whole_run(out, reference, demo_tokenizer, expected_step=int(newest.split("-")[-1]))


# ------------------------------------------------------------------------------------ resolution and rotation
def fake_checkpoint(folder: Path, step: int, complete: bool) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x" * step)
    if complete:
        files = {"model.safetensors": step}
        (path / COMPLETE_FILE).write_text(json.dumps({"global_step": step, "files": files}))
    return path


def test_the_newest_complete_checkpoint_is_chosen_and_skipped_ones_are_named(tmp_path):
    for step, complete in ((1, True), (2, True), (3, False)):
        fake_checkpoint(tmp_path, step, complete)
    with pytest.warns(UserWarning, match=r"checkpoint-3 \(no checkpoint_complete.json"):
        assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-2")
    (tmp_path / "checkpoint-2" / "model.safetensors").write_bytes(b"x")  # truncated after it was marked complete
    with pytest.warns(UserWarning, match="model.safetensors has 1 bytes, 2 when it was saved"):
        assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-1")
    trainer_dir = tmp_path / "none"
    fake_checkpoint(trainer_dir, 1, False)
    trainer = tiny_job(str(trainer_dir))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no complete checkpoint .*checkpoint-1"):
        trainer.train(resume_from_checkpoint=True)


def test_rotation_counts_complete_checkpoints_only_and_removes_stale_partial_ones(tmp_path):
    for step, complete in ((1, True), (2, False), (3, True), (4, True), (5, False)):
        fake_checkpoint(tmp_path, step, complete)
    rotate(str(tmp_path), 2, str(tmp_path / "checkpoint-4"), best=str(tmp_path / "checkpoint-1"))
    # kept: the current (4), the best (1); the partial 2 is older than the current one, 5 may still be written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "checkpoint-4", "checkpoint-5"]
    rotate(str(tmp_path), 1, str(tmp_path / "checkpoint-4"), best=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-5"]
