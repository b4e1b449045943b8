"""Metric curves from Hugging Face Trainer runs (shared by every trainer).

A run directory is a Trainer `output_dir`. Its metric history is the `log_history`
list in `trainer_state.json`, read from the run directory itself or, when that file
is absent, from the `checkpoint-N` subdirectory with the largest N that has one
(largest by step number, not by modification time). A path to a
`trainer_state.json` file is accepted as a run too.

`plot_run_dirs` writes, into `out_dir`:

- `<metric>.png`: one curve per metric (x = step), every run that logged it
  overlaid and labelled. Characters other than letters, digits, `_ . - @` in a
  metric name become `_` in the file name (`train/loss` -> `train_loss.png`).
- `summary.png`: a grid of the core metrics that are present (reward,
  eval_accuracy, kl, loss, answer_logprob, normalized_reward); when none of them
  is, the first plotted metrics (at most six). Four make a 2 x 2 grid; a row left
  short is filled with the next plotted metrics, so no panel is empty.

Every panel has axis labels: x = the optimizer step, y = the metric with its unit
(`metric_axis`). Shares (accuracy, maj@k, rates, fractions) are drawn in percent on a
fixed 0-100 axis, with each value printed when there are few points; an evaluation
before training (the demo's, or any `evaluate()` before `train()`) is the step-0 point.
- `metrics.csv`: one wide-format table for all runs, columns
  `run, step, <metric>, ...` (the plotted metrics, in plotting order); one row per
  (run, step) at which the run logged at least one of them; an empty cell where it
  did not log that metric at that step. `run` is the run's label.

Only Matplotlib's Agg canvas is used (no pyplot, no global backend change), so this
works headless and leaves an interactive session's backend alone.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
import os
import re

STATE_FILE = "trainer_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

# Plotted, in this order, whenever a run logged them; entries are fnmatch patterns.
DEFAULT_METRICS = (
    "reward",
    "r",
    "kl",
    "loss",
    "policy_loss",
    "answer_loss",
    "eval_accuracy",
    "eval_maj@*",
    "advantage_std",
    "rationale_length",
    "stop_fraction",
    "normalized_reward",
    "answer_logprob",
    "entropy",
    "learning_rate",
    "grad_norm",
)
SUMMARY_METRICS = ("reward", "eval_accuracy", "kl", "loss", "answer_logprob", "normalized_reward")
_MAX_FALLBACK_SUMMARY = 6
STEP_LABEL = "optimizer step"

# (fnmatch pattern, y-axis label, factor) in order: the first match wins. A share (accuracy, a rate, a fraction)
# is drawn in percent on a fixed 0-100 axis, so that 60 -> 91 % does not look like a 1.5-point change.
PERCENT_METRICS = ("*accuracy*", "*maj@*", "*_rate", "*fraction*")
METRIC_AXES = (
    *((pattern, "% of questions" if "acc" in pattern or "maj" in pattern else "%", 100.0)
      for pattern in PERCENT_METRICS),
    ("*logprob*", "log-probability (nats)", 1.0),
    ("kl", "KL to the reference (nats)", 1.0),
    ("*kl*", "KL (nats)", 1.0),
    ("*length*", "tokens", 1.0),
    ("learning_rate", "learning rate", 1.0),
    ("grad_norm", "gradient norm (before clipping)", 1.0),
    ("*loss*", "loss (the trainer's objective)", 1.0),
    ("*reward*", "reward (see the trainer's page)", 1.0),
)


def find_trainer_state(run_dir: str) -> str:
    """Path of the `trainer_state.json` for `run_dir` (see module docstring); SystemExit naming the path if none."""
    if os.path.isfile(run_dir):
        return run_dir
    if not os.path.isdir(run_dir):
        raise SystemExit(f"plot_metrics: run directory not found: {run_dir}")
    direct = os.path.join(run_dir, STATE_FILE)
    if os.path.isfile(direct):
        return direct
    checkpoints = []
    for name in os.listdir(run_dir):
        match = _CHECKPOINT_RE.match(name)
        path = os.path.join(run_dir, name, STATE_FILE)
        if match and os.path.isfile(path):
            checkpoints.append((int(match.group(1)), path))
    if not checkpoints:
        raise SystemExit(f"plot_metrics: no {STATE_FILE} in {run_dir} nor in any {os.path.join(run_dir, 'checkpoint-*')}")
    return max(checkpoints)[1]


def load_log_history(run_dir: str) -> list[dict]:
    """The `log_history` list of the run's trainer state."""
    path = find_trainer_state(run_dir)
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"plot_metrics: cannot read {path}: {err}") from err
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise SystemExit(f"plot_metrics: {path} has no log_history list")
    return history


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_series(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value), ...]} sorted by step, for every numeric key except `step`.

    Entries without a numeric `step` are ignored; when a metric was logged twice at the
    same step (e.g. a resumed run) the later entry wins.
    """
    series: dict[str, dict[int, float]] = {}
    for entry in history:
        if not isinstance(entry, dict) or not _is_number(entry.get("step")):
            continue
        step = int(entry["step"])
        for key, value in entry.items():
            if key != "step" and _is_number(value):
                series.setdefault(key, {})[step] = float(value)
    return {key: sorted(points.items()) for key, points in series.items()}


def select_metrics(available: list[str], patterns=None) -> list[str]:
    """Names in `available` matching `patterns` (fnmatch; default DEFAULT_METRICS), in pattern order."""
    chosen: list[str] = []
    for pattern in patterns or DEFAULT_METRICS:
        matches = sorted(
            (name for name in available if fnmatch.fnmatchcase(name, pattern)),
            key=lambda name: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)],
        )
        chosen.extend(name for name in matches if name not in chosen)
    return chosen


def metric_filename(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", metric) + ".png"


def _default_labels(run_dirs: list[str]) -> list[str]:
    labels = []
    for run_dir in run_dirs:
        path = os.path.abspath(run_dir)
        if os.path.isfile(path):  # a trainer_state.json given directly: name it by its directory
            path = os.path.dirname(path)
        labels.append(os.path.basename(path.rstrip(os.sep)) or path)
    if len(set(labels)) < len(labels):  # same-named dirs: fall back to the paths as given
        labels = [os.path.normpath(d) for d in run_dirs]
    return labels


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def metric_axis(metric: str) -> tuple[str, float, tuple[float, float] | None]:
    """(y label, factor applied to the values, fixed y limits or None) of a metric."""
    for pattern, label, factor in METRIC_AXES:
        if fnmatch.fnmatchcase(metric, pattern):
            percent = any(fnmatch.fnmatchcase(metric, p) for p in PERCENT_METRICS)
            return label, factor, ((0.0, 100.0) if percent else None)
    return metric, 1.0, None


def draw_metric(ax, metric: str, runs: list[tuple[str, dict]], legend: bool) -> None:
    """One panel: `metric` of every run against the optimizer step, labelled, shares in percent on 0-100."""
    label_y, factor, limits = metric_axis(metric)
    for label, series in runs:
        points = series.get(metric)
        if not points:
            continue
        steps = [s for s, _ in points]
        values = [factor * v for _, v in points]
        marker = "o" if len(points) <= 30 else None
        ax.plot(steps, values, label=label, marker=marker, markersize=3, linewidth=1.2)
        if len(points) <= 8 and limits:  # a few evaluations: print each value
            for step, value in zip(steps, values):
                ax.annotate(f"{value:.1f}", (step, value), textcoords="offset points", xytext=(0, 5),
                            ha="center", fontsize="x-small")
    ax.set_title(metric)
    ax.set_xlabel(STEP_LABEL)
    ax.set_ylabel(label_y)
    if limits:
        ax.set_ylim(limits[0], limits[1] + 5)  # room for the value labels above 100
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(fontsize="small")


def summary_layout(chosen: list[str]) -> tuple[list[str], int, int]:
    """(metrics, rows, columns) of summary.png: the core metrics present (else the first plotted ones), four in a
    2 x 2 grid, a short last row filled with the next plotted metrics so that no panel is empty."""
    core = [m for m in SUMMARY_METRICS if m in chosen] or chosen[:_MAX_FALLBACK_SUMMARY]
    ncols = 2 if len(core) == 4 else min(3, len(core))
    nrows = math.ceil(len(core) / ncols)
    core += [m for m in chosen if m not in core][: nrows * ncols - len(core)]
    return core, nrows, ncols


def _write_csv(path: str, metrics: list[str], runs: list[tuple[str, dict]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "step", *metrics])
        for label, series in runs:
            by_step: dict[int, dict[str, float]] = {}
            for metric in metrics:
                for step, value in series.get(metric, []):
                    by_step.setdefault(step, {})[metric] = value
            for step in sorted(by_step):
                row = by_step[step]
                writer.writerow([label, step, *(repr(row[m]) if m in row else "" for m in metrics)])


def plot_run_dirs(run_dirs, out_dir=None, metrics=None, labels=None) -> list[str]:
    """Plot the metric histories of one or more Trainer runs; return the paths written.

    run_dirs: Trainer output dirs (or trainer_state.json paths). out_dir: where to
    write (default `<first run>/plots`). metrics: names or fnmatch patterns (default
    DEFAULT_METRICS); metrics no run logged are skipped. labels: one per run (default:
    the directory names). Raises SystemExit with the path when a run has no trainer
    state, and when none of the requested metrics was logged by any run.
    """
    run_dirs = [os.fspath(d) for d in ([run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else run_dirs)]
    if not run_dirs:
        raise ValueError("plot_run_dirs needs at least one run directory")
    labels = list(labels) if labels else _default_labels(run_dirs)
    if len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels for {len(run_dirs)} run directories")
    runs = [(label, metric_series(load_log_history(d))) for label, d in zip(labels, run_dirs)]

    available = sorted({name for _, series in runs for name in series})
    chosen = select_metrics(available, metrics)
    if not chosen:
        wanted = ", ".join(metrics or DEFAULT_METRICS)
        raise SystemExit(
            f"plot_metrics: none of [{wanted}] was logged in {', '.join(run_dirs)}; "
            f"logged metrics: {', '.join(available) or 'none'}"
        )

    if out_dir is None:
        first = run_dirs[0]
        out_dir = os.path.join(os.path.dirname(first) if os.path.isfile(first) else first, "plots")
    os.makedirs(out_dir, exist_ok=True)
    written = []

    for metric in chosen:
        fig = _new_figure(6.4, 4.0)
        draw_metric(fig.add_subplot(1, 1, 1), metric, runs, legend=True)
        fig.tight_layout()
        path = os.path.join(out_dir, metric_filename(metric))
        fig.savefig(path)
        written.append(path)

    core, nrows, ncols = summary_layout(chosen)
    fig = _new_figure(4.2 * ncols, 3.2 * nrows)
    for i, metric in enumerate(core):
        draw_metric(fig.add_subplot(nrows, ncols, i + 1), metric, runs, legend=i == 0)
    fig.tight_layout()
    path = os.path.join(out_dir, "summary.png")
    fig.savefig(path)
    written.append(path)

    path = os.path.join(out_dir, "metrics.csv")
    _write_csv(path, chosen, runs)
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> list[str]:
    """`scripts/plot_metrics.py`: plot the logged metrics of one or more runs; prints the files written."""
    import argparse

    parser = argparse.ArgumentParser(description="Plot the logged metrics of one or more Trainer runs.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="Trainer output_dir(s) to plot")
    parser.add_argument("--out", default=None, help="output directory (default: FIRST_RUN_DIR/plots)")
    parser.add_argument(
        "--metrics", nargs="+", default=None, metavar="NAME",
        help=f"metric names or glob patterns to plot (default: {' '.join(DEFAULT_METRICS)})",
    )
    parser.add_argument("--labels", nargs="+", default=None, help="one legend label per RUN_DIR (default: dir names)")
    args = parser.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.run_dirs):
        parser.error(f"--labels: got {len(args.labels)} labels for {len(args.run_dirs)} run directories")
    written = plot_run_dirs(args.run_dirs, args.out, metrics=args.metrics, labels=args.labels)
    for path in written:
        print(path)
    return written
