"""The demo's warm start: saved to a temporary folder and renamed (a SIGKILL while it saves leaves no half warm
start), an incomplete one rebuilt with a message, and its run_config.json naming the data it was trained on, so
that `implicit-reasoning-eval` evaluates it offline."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from implicit_reasoning.demo import DEMO_DATASET_CONFIG, jobs
from implicit_reasoning.trainer import LatroConfig, LatroTrainer
from implicit_reasoning.trainer.core.checkpoints import CRASH_ENV

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
STEPS = 2  # warm-start SFT updates (the demo's 500 would take minutes)
BUILD = ("import sys; from implicit_reasoning.demo import jobs; jobs.DEMO_WARM_START['max_steps'] = 2; "
         "from implicit_reasoning.trainer import LatroConfig, LatroTrainer; "
         "config = LatroConfig(output_dir=sys.argv[1], dataset_name='arithmetic', dataset_config=sys.argv[2], "
         "report_to='none', use_cpu=True); jobs.build_warm_start(config, sys.argv[1] + '/warm_start', LatroTrainer)")


def demo_config(out: Path) -> LatroConfig:
    return LatroConfig(output_dir=str(out), dataset_name="arithmetic", dataset_config=DEMO_DATASET_CONFIG,
                       report_to="none", use_cpu=True)


@pytest.fixture
def few_steps(monkeypatch):
    monkeypatch.setitem(jobs.DEMO_WARM_START, "max_steps", STEPS)


@pytest.mark.parametrize("point", ["warm_start_saved", "warm_start_marked"])
def test_a_warm_start_killed_while_it_saves_is_rebuilt(tmp_path, few_steps, capsys, point):
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", BUILD, str(out), DEMO_DATASET_CONFIG],
                            env={**ENV, CRASH_ENV: f"{point}@0"}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (out / "warm_start").exists()  # the kill hit the temporary folder, never warm_start itself
    model, _ = jobs.build_warm_start(demo_config(out), str(out / "warm_start"), LatroTrainer)
    assert jobs.warm_start_problem(str(out / "warm_start")) is None
    assert [p.name for p in out.iterdir()] == ["warm_start"]  # the killed build's temporary folder is gone
    assert model.config.vocab_size > 0 and "reusing" not in capsys.readouterr().out


def test_a_damaged_warm_start_is_named_and_rebuilt(tmp_path, few_steps, capsys):
    """What an older version left when killed while saving: an empty config.json."""
    directory = tmp_path / "out" / "warm_start"
    directory.mkdir(parents=True)
    (directory / "config.json").write_text("")
    jobs.build_warm_start(demo_config(tmp_path / "out"), str(directory), LatroTrainer)
    printed = capsys.readouterr().out
    assert "is incomplete" in printed and "rebuilding it" in printed
    assert json.loads((directory / "config.json").read_text())["model_type"] == "llama"
    jobs.build_warm_start(demo_config(tmp_path / "out"), str(directory), LatroTrainer)
    assert "reusing warm start" in capsys.readouterr().out


def test_the_warm_starts_run_config_names_its_data_and_it_evaluates_offline(tmp_path, few_steps):
    from implicit_reasoning.evaluate import EvaluationArguments, run_evaluation

    directory = tmp_path / "out" / "warm_start"
    jobs.build_warm_start(demo_config(tmp_path / "out"), str(directory), LatroTrainer)
    run = json.loads((directory / "run_config.json").read_text())
    assert (run["trainer"], run["dataset_name"], run["dataset_config"]) == ("latro", "arithmetic", DEMO_DATASET_CONFIG)
    summary = run_evaluation(EvaluationArguments(model_name_or_path=str(directory), split="eval", max_eval_samples=4,
                                                 eval_num_samples=1, output_dir=str(tmp_path / "eval")))
    assert summary["dataset"] == "arithmetic" and summary["num_questions"] == 4
