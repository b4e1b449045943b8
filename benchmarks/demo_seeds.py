#!/usr/bin/env python
"""Run the built-in demo of one or more trainers over several seeds and summarise accuracy (mean and range).

  python benchmarks/demo_seeds.py latro markovian --seeds 0 1 2 [--jobs 2] [--out benchmarks/demo_seeds]

Each run is `python scripts/training.py configs/demo_<trainer>.yaml --seed S --output_dir outputs/demo_seeds/<trainer>_seed<S>`
(one torch thread each; `--jobs` runs that many at once). Writes OUT/summary.json and OUT/summary.md:
held-out accuracy before (the warm start) and after training, the eval accuracy at every
evaluation during training, and wall time, per seed and as mean [min, max].
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


RUNS = ROOT / "outputs" / "demo_seeds"


def run_one(trainer: str, seed: int, extra: list[str]) -> dict:
    run_dir = RUNS / f"{trainer}_seed{seed}"
    command = [sys.executable, str(ROOT / "scripts/training.py"), str(ROOT / f"configs/demo_{trainer}.yaml"),
               "--seed", str(seed), "--output_dir", str(run_dir), "--disable_tqdm", "true", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    started = time.time()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{trainer} seed {seed} failed:\n{result.stderr[-3000:]}")
    summary = json.loads((run_dir / "demo_results.json").read_text())
    return {**summary, "demo": trainer, "wall_seconds": round(time.time() - started, 1)}


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


METRICS = ("accuracy", "repetition_rate", "loss")  # eval metrics a demo reports before / after (as it has them)
CURVES = ("reward", "objective/scores", "loss/value")  # training logs reported at the first and last log


def summarise(runs: list[dict]) -> dict:
    by_trainer: dict[str, list[dict]] = {}
    for run in runs:
        by_trainer.setdefault(run["demo"], []).append(run)
    summary = {}
    for trainer, rows in by_trainer.items():
        entry = {"seeds": [r["seed"] for r in rows], "wall_seconds": spread([r["wall_seconds"] for r in rows])}
        for key in METRICS:
            if all(f"{key}_before" in r for r in rows):
                entry[f"{key}_before"] = spread([r[f"{key}_before"] for r in rows])
                entry[f"{key}_after"] = spread([r[f"{key}_after"] for r in rows])
                entry[f"eval_{key}_during_training"] = [r[f"eval_{key}_during_training"] for r in rows]
        for key in CURVES:
            if all(f"{key}_first_log" in r for r in rows):
                entry[f"{key}_first_log"] = spread([r[f"{key}_first_log"] for r in rows])
                entry[f"{key}_last_log"] = spread([r[f"{key}_last_log"] for r in rows])
        summary[trainer] = {**entry, "runs": rows}
    return summary


def _fmt(key: str, s: dict) -> str:
    if key == "accuracy":
        return f"{100 * s['mean']:.1f} % [{100 * s['min']:.1f}, {100 * s['max']:.1f}]"
    return f"{s['mean']:.3f} [{s['min']:.3f}, {s['max']:.3f}]"


def markdown(summary: dict, command: str) -> str:
    lines = [f"Command: `{command}`", "",
             "| trainer | seeds | metric | before (warm start) | after | wall time per run |", "|---|---|---|---|---|---|"]
    for trainer, s in summary.items():
        wall = s["wall_seconds"]
        for key in METRICS:
            if f"{key}_before" in s:
                lines.append(f"| {trainer} | {', '.join(map(str, s['seeds']))} | eval {key} | "
                             f"{_fmt(key, s[f'{key}_before'])} | {_fmt(key, s[f'{key}_after'])} | "
                             f"{wall['mean']:.0f} s [{wall['min']:.0f}, {wall['max']:.0f}] |")
        for key in CURVES:
            if f"{key}_first_log" in s:
                lines.append(f"| {trainer} | {', '.join(map(str, s['seeds']))} | {key} (first / last log) | "
                             f"{_fmt(key, s[f'{key}_first_log'])} | {_fmt(key, s[f'{key}_last_log'])} | |")
    lines += ["", "Eval metrics at each evaluation during training, per seed:", ""]
    for trainer, s in summary.items():
        for key in METRICS:
            for seed, curve in zip(s["seeds"], s.get(f"eval_{key}_during_training", [])):
                scale = 100 if key == "accuracy" else 1
                lines.append(f"- {trainer} seed {seed} {key}: " + " -> ".join(f"{scale * a:.3g}" for a in curve))
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trainers", nargs="+", help="demo names: configs/demo_<name>.yaml (latro, markovian, sft, "
                                                     "star, star_dpo, non_markovian, ppo_curriculum, ppo_text)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default=str(RUNS), help="where summary.json / summary.md go")
    args, extra = parser.parse_known_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(t, s) for t in args.trainers for s in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(lambda task: run_one(*task, extra), tasks))
    summary = summarise(runs)
    command = "python benchmarks/demo_seeds.py " + " ".join((argv if argv is not None else sys.argv[1:]))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(markdown(summary, command))
    print(markdown(summary, command))
    return summary


if __name__ == "__main__":
    main()
