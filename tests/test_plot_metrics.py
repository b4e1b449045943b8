"""Tests for the shared metric plotter (implicit_reasoning.analysis.plotting, scripts/plot_metrics.py)."""

import csv
import json
import os
import subprocess
import sys

import pytest

from implicit_reasoning.analysis.plotting import find_trainer_state, plot_run_dirs, select_metrics

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, "scripts", "plot_metrics.py")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history_a():
    rows = []
    for step in (1, 2, 3, 4):
        rows.append(
            {"step": step, "epoch": step / 4, "loss": 1.0 / step, "reward": -2.0 + 0.25 * step, "kl": 0.01 * step,
             "learning_rate": 5e-7, "advantage_mean": 0.0}
        )
    rows.append({"step": 2, "eval_accuracy": 0.25, "eval_maj@4": 0.5, "eval_num_questions": 8.0})
    rows.append({"step": 4, "eval_accuracy": 0.375, "eval_maj@4": 0.625, "eval_num_questions": 8.0})
    rows.append({"step": 4, "train_runtime": 12.5, "train_loss": 0.52, "total_flos": 0})
    return rows


def _history_b(scale):
    return [{"step": s, "loss": scale * s, "reward": -scale, "answer_logprob": -1.5 * s} for s in (1, 2)]


def _write_state(directory, history):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "trainer_state.json"), "w") as f:
        json.dump({"global_step": max(r["step"] for r in history), "log_history": history}, f)


@pytest.fixture()
def runs(tmp_path):
    """run_a: trainer_state.json at top level. run_b: only in checkpoint-2 (stale) and checkpoint-10 (newest)."""
    run_a = tmp_path / "run_a"
    _write_state(run_a, _history_a())
    run_b = tmp_path / "run_b"
    _write_state(run_b / "checkpoint-10", _history_b(10.0))
    _write_state(run_b / "checkpoint-2", _history_b(2.0))
    os.makedirs(run_b / "checkpoint-99-tmp")  # not a checkpoint name: ignored
    # make the stale checkpoint the most recently modified: selection must go by step
    os.utime(run_b / "checkpoint-10" / "trainer_state.json", (1_000_000, 1_000_000))
    return str(run_a), str(run_b)


def _assert_png(path):
    assert os.path.isfile(path), path
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC, path
    assert os.path.getsize(path) > 2000, path


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_newest_checkpoint_by_step(runs):
    _, run_b = runs
    assert find_trainer_state(run_b) == os.path.join(run_b, "checkpoint-10", "trainer_state.json")
    assert find_trainer_state(runs[0]) == os.path.join(runs[0], "trainer_state.json")


def test_plot_run_dirs_two_runs(runs, tmp_path):
    out = str(tmp_path / "plots")
    written = plot_run_dirs(list(runs), out)
    names = sorted(os.path.basename(p) for p in written)
    assert names == sorted(
        ["reward.png", "kl.png", "loss.png", "eval_accuracy.png", "eval_maj@4.png", "learning_rate.png",
         "answer_logprob.png", "summary.png", "metrics.csv"]
    )
    for path in written:
        assert os.path.dirname(path) == out
        if path.endswith(".png"):
            _assert_png(path)
    # metrics absent from every run, and non-default ones, are skipped
    for absent in ("policy_loss", "entropy", "grad_norm", "epoch", "advantage_mean", "train_loss"):
        assert not os.path.exists(os.path.join(out, f"{absent}.png"))

    rows = _read_csv(os.path.join(out, "metrics.csv"))
    header = list(rows[0])
    assert header[:2] == ["run", "step"]
    assert header[2:] == ["reward", "kl", "loss", "eval_accuracy", "eval_maj@4", "answer_logprob", "learning_rate"]
    a = {int(r["step"]): r for r in rows if r["run"] == "run_a"}
    b = {int(r["step"]): r for r in rows if r["run"] == "run_b"}
    assert sorted(a) == [1, 2, 3, 4] and sorted(b) == [1, 2]
    for entry in _history_a():
        for key, value in entry.items():
            if key in header[2:]:
                assert float(a[entry["step"]][key]) == value
    assert a[1]["eval_accuracy"] == "" and a[1]["answer_logprob"] == ""
    for entry in _history_b(10.0):  # values from checkpoint-10, not checkpoint-2
        assert float(b[entry["step"]]["loss"]) == entry["loss"]
        assert float(b[entry["step"]]["answer_logprob"]) == entry["answer_logprob"]
    assert b[1]["kl"] == ""


def test_metrics_and_labels(runs, tmp_path):
    out = str(tmp_path / "sel")
    written = plot_run_dirs(list(runs), out, metrics=["loss", "eval_maj@*", "not_logged"], labels=["A", "B"])
    assert sorted(os.path.basename(p) for p in written) == ["eval_maj@4.png", "loss.png", "metrics.csv", "summary.png"]
    _assert_png(os.path.join(out, "summary.png"))
    rows = _read_csv(os.path.join(out, "metrics.csv"))
    assert list(rows[0]) == ["run", "step", "loss", "eval_maj@4"]
    assert {r["run"] for r in rows} == {"A", "B"}
    with pytest.raises(ValueError, match="labels"):
        plot_run_dirs(list(runs), out, labels=["only_one"])
    with pytest.raises(SystemExit, match="nothing_here"):
        plot_run_dirs([runs[0]], out, metrics=["nothing_here"])


def test_default_out_dir_single_run(runs):
    run_a, _ = runs
    written = plot_run_dirs([run_a], None)
    assert all(os.path.dirname(p) == os.path.join(run_a, "plots") for p in written)
    assert "answer_logprob.png" not in {os.path.basename(p) for p in written}


def test_select_metrics_order():
    available = ["eval_maj@16", "eval_maj@4", "loss", "reward", "epoch"]
    assert select_metrics(available) == ["reward", "loss", "eval_maj@4", "eval_maj@16"]


def test_missing_state_names_path(tmp_path):
    empty = tmp_path / "no_state_here"
    os.makedirs(empty / "checkpoint-3")
    with pytest.raises(SystemExit) as info:
        plot_run_dirs([str(empty)], str(tmp_path / "out"))
    assert str(empty) in str(info.value)
    with pytest.raises(SystemExit, match="does_not_exist"):
        plot_run_dirs([str(tmp_path / "does_not_exist")], str(tmp_path / "out"))


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60
    )


def test_cli(runs, tmp_path):
    out = str(tmp_path / "cli_out")
    proc = _cli(*runs, "--out", out, "--labels", "first", "second")
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.split()
    assert os.path.join(out, "summary.png") in printed and os.path.join(out, "metrics.csv") in printed
    for path in printed:
        assert os.path.isfile(path)
        if path.endswith(".png"):
            _assert_png(path)
    assert {r["run"] for r in _read_csv(os.path.join(out, "metrics.csv"))} == {"first", "second"}

    # default --out: FIRST_RUN_DIR/plots
    proc = _cli(runs[1], "--metrics", "loss")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [os.path.join(runs[1], "plots", n) for n in ("loss.png", "summary.png", "metrics.csv")]

    missing = str(tmp_path / "missing_run")
    os.makedirs(missing)
    proc = _cli(missing)
    assert proc.returncode != 0
    assert missing in proc.stderr and "trainer_state.json" in proc.stderr

    proc = _cli(*runs, "--labels", "just_one")
    assert proc.returncode == 2 and "--labels" in proc.stderr


def test_a_run_evaluated_before_training_plots_its_starting_point(tmp_path, tiny_model_dir):
    """The demo evaluates the warm start, then trains: that evaluation is the accuracy curve's step-0 point, and the
    run's own trainer_state.json (no checkpoint needed) holds the whole history, the final evaluation included."""
    from implicit_reasoning.pipeline import parse_training_args, run_training

    out = tmp_path / "run"
    _, config = parse_training_args([
        "--trainer", "latro", "--output_dir", str(out), "--model_name_or_path", str(tiny_model_dir),
        "--dataset_name", "arithmetic", "--dataset_config", "num_terms=2,max_value=5,num_examples=8", "--rloo_k", "2",
        "--per_device_train_batch_size", "4", "--response_length", "4", "--max_steps", "2", "--logging_steps", "1",
        "--save_strategy", "no", "--report_to", "none", "--use_cpu", "--max_eval_samples", "4",
        "--per_device_eval_batch_size", "4", "--disable_tqdm", "true"])
    run_training("latro", config, evaluate_before=True)
    plot_run_dirs([str(out)], str(tmp_path / "plots"), metrics=["eval_accuracy", "loss"])
    with open(tmp_path / "plots" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows if r["eval_accuracy"]] == [0, 2]  # before training, after it
    assert {int(r["step"]) for r in rows if r["loss"]} == {1, 2}


def test_every_panel_is_labelled_and_a_share_has_a_fixed_percent_axis():
    from implicit_reasoning.analysis.plotting import _new_figure, draw_metric

    runs = [("a", {"eval_accuracy": [(0, 0.60), (40, 0.91)], "kl": [(5, 0.01), (10, 0.02)], "reward": [(5, -4.0)]})]
    fig = _new_figure(6, 4)
    for metric, ylabel in (("eval_accuracy", "% of questions"), ("kl", "KL to the reference (nats)"),
                           ("reward", "reward")):
        ax = fig.add_subplot(1, 1, 1)
        draw_metric(ax, metric, runs, legend=True)
        assert ax.get_xlabel() == "optimizer step" and ax.get_ylabel().startswith(ylabel), metric
        if metric == "eval_accuracy":  # 60 -> 91 % drawn as such, on 0-100, not autoscaled to the two points
            assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 100
            assert list(ax.lines[0].get_ydata()) == pytest.approx([60.0, 91.0])
        fig.delaxes(ax)


@pytest.mark.parametrize("chosen, shape", [
    (["reward", "eval_accuracy", "kl", "loss"], (2, 2)),
    (["reward", "eval_accuracy", "kl", "loss", "answer_logprob", "learning_rate", "grad_norm"], (2, 3)),
    (["reward", "eval_accuracy", "kl", "loss", "answer_logprob", "grad_norm"], (2, 3)),
    (["loss", "grad_norm"], (1, 1)),
])
def test_the_summary_grid_has_no_empty_panel(chosen, shape):
    from implicit_reasoning.analysis.plotting import summary_layout

    metrics, rows, cols = summary_layout(chosen)
    assert (rows, cols) == shape and len(metrics) == rows * cols and len(set(metrics)) == len(metrics)
