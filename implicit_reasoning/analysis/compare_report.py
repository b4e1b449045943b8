"""The report of `implicit-reasoning-compare`: mean / range over seeds, the table, the figures, the JSON.

`aggregate` turns the job records (`implicit_reasoning.demo.compare`) into one entry per method;
`write_report` writes OUT/methods.json (summary + every record), OUT/methods.md (the table) and
OUT/methods_accuracy.png (held-out accuracy against generated tokens, every method on one figure),
OUT/methods_curves.png (per method and seed) and OUT/methods_training.png (each method's logged
training signal against updates).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

FINAL_METRICS = ("accuracy", "rationale_tokens", "degeneration_rate", "fragility_redacted", "fragility_question_kept")
LABELS = {
    "warm_start": "warm start", "sft": "SFT (gold rationales)", "latro": "LaTRO", "markovian": "Markovian",
    "non_markovian": "non-Markovian ablation", "star_sft": "STaR-SFT", "star_dpo": "STaR-DPO", "ppo": "PPO (accuracy)",
}
TRAINING_SIGNAL = {  # the logged training metric each method's figure shows (the first one present)
    "sft": ("loss",), "latro": ("reward", "objective/scores"), "markovian": ("reward",),
    "non_markovian": ("reward",), "star_sft": ("generation_accuracy",), "star_dpo": ("generation_accuracy",),
    "ppo": ("objective/scores", "reward"),
}


NOTES = [
    "- Shared format (LaTRO's, the registry's): prompt `Question: 3 + 4 + 5\\nLet's think step by step.\\n`, "
    "completion `3 + 4 = 7. 7 + 5 = 12. The answer is 12.`. LaTRO, SFT and PPO use it by default, STaR through "
    "`cot_trigger: \"Let's think step by step.\"`, Markovian through `instruction: \"Question:\"`, "
    "`reasoning_prefix: \"Let's think step by step.\\n\"`, `answer_marker: \" The answer is\"` (its critic scores "
    "`The answer is y` after the CoT, with the question redacted). No trainer needs a format of its own.",
    "- Warm start: the demo's SFT (500 updates) on a mix of careful rationales and quick guesses off by 1-5, "
    "trained once per seed and loaded by every method. Each method keeps its demo config's hyperparameters "
    "(`configs/demo_*.yaml`); only the stopping point is the budget's.",
    "- Evaluation (`implicit_reasoning.demo.compare.evaluate`): the seed's first 200 eval questions; greedy "
    "accuracy; maj@k over k samples at temperature 1; rationale tokens = the completion before `The answer is`; "
    "degeneration = STaR's check (a completion dominated by one repeated n-gram); fragility = the drop of the mean "
    "log P(gold answer) after `The answer is` when every digit of the model's greedy CoT is replaced at random, "
    "scored by the model itself with the question redacted (Markovian's context) and kept (the ablation's).",
    "- Held-out rows, not unseen questions: the task (3 terms, values up to 10) has about 1 000 distinct "
    "questions, and the 5 000-row train split holds nearly every evaluation question (STaR's 400-row split about "
    "a third of them). maj@k is below greedy because temperature-1 samples over the whole vocabulary are right "
    "far less often than the greedy answer.",
]


def spread(values) -> dict:
    """Mean and [min, max] of finite values (None when there is none)."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return {"mean": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "n": len(values)}


def majority_key(final: dict) -> str | None:
    return next((k for k in final if k.startswith("maj@")), None)


def aggregate(records: list[dict]) -> dict:
    """{method: {seeds, accuracy, maj@k, ..., tokens, steps, train_seconds, wall_seconds}} in record order."""
    by_method: dict[str, list[dict]] = {}
    for record in records:
        by_method.setdefault(record["method"], []).append(record)
    summary = {}
    for method, rows in by_method.items():
        entry = {"seeds": [r["seed"] for r in rows]}
        for key in FINAL_METRICS:
            entry[key] = spread(r["final"].get(key) for r in rows)
        key = majority_key(rows[0]["final"])
        if key:
            entry["maj_key"], entry["maj"] = key, spread(r["final"][key] for r in rows)
        for key in ("tokens", "steps", "train_seconds", "wall_seconds"):
            entry[key] = spread(r[key] for r in rows)
        entry["budget"] = rows[0].get("budget", 0)
        summary[method] = entry
    return summary


def above_warm_start(summary: dict) -> dict[str, bool]:
    """Whether each method's mean accuracy is above the warm start's."""
    base = summary["warm_start"]["accuracy"]["mean"]
    return {m: s["accuracy"]["mean"] > base for m, s in summary.items() if m != "warm_start"}


def _pct(s: dict) -> str:
    if s is None or s["mean"] is None:
        return "–"
    return f"{100 * s['mean']:.1f} % [{100 * s['min']:.1f}, {100 * s['max']:.1f}]"


def _num(s: dict, digits: int = 1) -> str:
    if s is None or s["mean"] is None:
        return "–"
    return f"{s['mean']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"


def markdown(summary: dict, command: str, seconds: float, budget: int) -> str:
    """The table (one row per method) and its notes."""
    maj = next((s["maj_key"] for s in summary.values() if "maj_key" in s), "maj@k")
    lines = [
        f"Command: `{command}` (two jobs at a time, one torch thread each): {seconds / 60:.1f} min in all.",
        "",
        f"Budget: equal generated tokens, {budget} per RL method (real tokens of every `generate` call of the "
        "policy and its frozen copy during training; a method stops at the rollout / STaR-iteration end closest "
        "to the budget). SFT generates none (0 tokens: its demo's 40 updates on gold rationales).",
        "",
        f"| method | held-out accuracy (greedy) | {maj} | tokens generated | updates | wall time: training / job | "
        "rationale tokens | degeneration | fragility (redacted / question kept) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        tokens = "0" if not s["tokens"]["max"] else _num(s["tokens"], 0)
        lines.append(
            f"| {LABELS.get(method, method)} | {_pct(s['accuracy'])} | {_pct(s.get('maj'))} | {tokens} | "
            f"{_num(s['steps'], 0)} | {_num(s['train_seconds'], 0)} s / {_num(s['wall_seconds'], 0)} s | "
            f"{_num(s['rationale_tokens'])} | "
            f"{_pct(s['degeneration_rate'])} | {_num(s['fragility_redacted'], 2)} / "
            f"{_num(s['fragility_question_kept'], 2)} |")
    seeds = ", ".join(map(str, next(iter(summary.values()))["seeds"]))
    lines += ["", f"Mean and [min, max] over seeds {seeds}; every method starts from the seed's one warm start and "
              "is scored by the same code on the same held-out questions."]
    below = [LABELS.get(m, m) for m, ok in above_warm_start(summary).items() if not ok] if "warm_start" in summary \
        else []
    lines.append(f"Not above the warm start's mean accuracy: {', '.join(below)}." if below else
                 "Every method's mean accuracy is above the warm start's.")
    return "\n".join([*lines, "", *NOTES]) + "\n"


# ------------------------------------------------------------------------------ figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mean_curve(records: list[dict], x: str = "tokens") -> tuple[list[float], list[float]]:
    """The seeds' curve points averaged point by point: the first n - 1 points (n = the shortest curve's
    length), then every seed's LAST point (its final model), so the curve ends at the table's mean."""
    curves = [r["curve"] for r in records if r["curve"]]
    if not curves:
        return [], []
    n = min(len(c) for c in curves)
    points = [[c[i] for c in curves] for i in range(n - 1)] + [[c[-1] for c in curves]]
    xs = [statistics.fmean(p[x] for p in column) for column in points]
    ys = [statistics.fmean(p["accuracy"] for p in column) for column in points]
    return xs, ys


def plot_accuracy(records: list[dict], summary: dict, path: Path) -> None:
    """Held-out accuracy against generated tokens, every method (mean over seeds) on one figure."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    by_method = _by_method(records)
    for method, rows in by_method.items():
        if method == "warm_start":
            ax.axhline(100 * summary[method]["accuracy"]["mean"], color="gray", ls=":", label="warm start")
        elif method == "sft":
            ax.axhline(100 * summary[method]["accuracy"]["mean"], color="black", ls="--",
                       label="SFT (gold rationales, 0 tokens)")
            ax.plot([0], [100 * summary[method]["accuracy"]["mean"]], "ko")
        else:
            xs, ys = mean_curve(rows)
            line, = ax.plot(xs, [100 * y for y in ys], marker="o", label=LABELS.get(method, method))
            final = summary[method]["accuracy"]  # the seeds' range at the end
            ax.errorbar([xs[-1]], [100 * final["mean"]], yerr=[[100 * (final["mean"] - final["min"])],
                                                               [100 * (final["max"] - final["mean"])]],
                        color=line.get_color(), capsize=3, lw=1)
    ax.set_xlabel("generated tokens (training rollouts)")
    ax.set_ylabel("held-out greedy accuracy (%)")
    ax.set_title("Every method from one warm start, same evaluation\n(mean over seeds; bars: [min, max] at the end)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _by_method(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for record in records:
        out.setdefault(record["method"], []).append(record)
    return out


def _grid(n: int):
    plt = _plt()
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return plt, fig, list(axes.flat)


def plot_curves(records: list[dict], path: Path) -> None:
    """Per method: held-out accuracy during training, one line per seed (SFT: against updates)."""
    methods = {m: rows for m, rows in _by_method(records).items() if m != "warm_start"}
    plt, fig, axes = _grid(len(methods))
    for ax, (method, rows) in zip(axes, methods.items()):
        x = "step" if method == "sft" else "tokens"
        for row in rows:
            ax.plot([p[x] for p in row["curve"]], [100 * p["accuracy"] for p in row["curve"]], marker=".",
                    label=f"seed {row['seed']}")
        _finish(ax, LABELS.get(method, method), "updates" if x == "step" else "generated tokens", "accuracy (%)")
    _save(plt, fig, path)


def plot_training(records: list[dict], path: Path) -> None:
    """Per method: its logged training signal (reward, generation accuracy, loss) against updates, per seed."""
    methods = {m: rows for m, rows in _by_method(records).items() if m != "warm_start"}
    plt, fig, axes = _grid(len(methods))
    for ax, (method, rows) in zip(axes, methods.items()):
        keys = TRAINING_SIGNAL.get(method, ("loss",))
        key = next((k for k in keys if any(k in h for r in rows for h in r.get("logs", []))), keys[0])
        for row in rows:
            points = [(h.get("step", 0), h[key]) for h in row.get("logs", []) if key in h]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=f"seed {row['seed']}")
        _finish(ax, f"{LABELS.get(method, method)}: {key}", "updates")
    _save(plt, fig, path)


def _finish(ax, title: str, xlabel: str, ylabel: str | None = None) -> None:
    """One small panel's title, axis labels, grid and per-seed legend."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(records: list[dict], out: Path, command: str, seconds: float, args=None) -> dict:
    """methods.json, methods.md and the three PNGs in `out`; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary = aggregate(records)
    budget = getattr(args, "budget", max((r.get("budget", 0) for r in records), default=0))
    table = markdown(summary, command, seconds, budget)
    data = {"command": command, "total_seconds": round(seconds, 1), "budget_tokens": budget, "summary": summary,
            "records": records}
    (out / "methods.json").write_text(json.dumps(data, indent=1))
    (out / "methods.md").write_text("# Every method on one footing\n\n" + table)
    plot_accuracy(records, summary, out / "methods_accuracy.png")
    plot_curves(records, out / "methods_curves.png")
    plot_training(records, out / "methods_training.png")
    print(table)
    return summary
