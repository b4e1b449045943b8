"""The console commands (setup.py `console_scripts`); `scripts/*.py` are thin wrappers over them.

  implicit-reasoning-train       train (scripts/training.py): a config NAME or path, or flags
  implicit-reasoning-eval        evaluate a checkpoint (scripts/evaluation.py)
  implicit-reasoning-fragility   fragility of saved chains of thought (scripts/fragility.py)
  implicit-reasoning-plot        plot a run's logged metrics (scripts/plot_metrics.py)
  implicit-reasoning-benchmark   per-update benchmark, optionally against TRL (scripts/benchmark.py)
  implicit-reasoning-compare     every trainer from one warm start, equal token budget (scripts/compare_methods.py)

Each command loads `.env` first (`load_env`), ends its `--help` with the package's trainers and
returns None (a console script's return value becomes its exit status).
Heavy imports (torch, transformers) happen inside the commands, never on importing this module.
"""

from __future__ import annotations

import os
import sys

COMMANDS = {
    "implicit-reasoning-train": "train",
    "implicit-reasoning-eval": "evaluate",
    "implicit-reasoning-fragility": "fragility",
    "implicit-reasoning-plot": "plot",
    "implicit-reasoning-benchmark": "benchmark",
    "implicit-reasoning-compare": "compare",
}


def load_env() -> str | None:
    """Load `.env` into the environment, never overriding a variable already set; returns the file used.

    The first `.env` found from the current directory upwards, else (source checkout) the one at the
    repository root. Values are never printed: HF_TOKEN, WANDB_API_KEY ... only reach the libraries
    that read them from the environment.
    """
    from dotenv import find_dotenv, load_dotenv

    path = find_dotenv(usecwd=True)
    if not path:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        checkout = os.path.join(root, ".env")
        path = checkout if os.path.isfile(os.path.join(root, "setup.py")) and os.path.isfile(checkout) else ""
    if path:
        load_dotenv(path, override=False)
    return path or None


def trainer_listing() -> str:
    """The footer of every command's `--help`: version, trainers, commands."""
    from . import __version__
    from .trainer import TRAINER_SPECS

    trainers = ", ".join(f"{name} ({spec[1]})" for name, spec in sorted(TRAINER_SPECS.items()))
    return (f"implicit-reasoning {__version__}. Trainers: {trainers}.\n"
            f"Commands: {', '.join(COMMANDS)}.")


def _argv(argv: list[str] | None) -> list[str]:
    return list(sys.argv[1:] if argv is None else argv)


def _wants_help(argv: list[str]) -> bool:
    return "-h" in argv or "--help" in argv


def _run(main, argv: list[str]):
    """`main(argv)`; under `--help`, its help text (argparse exits 0 after it) and then the trainer listing.

    A help read by a pipe that closes early (`--help | head`) ends quietly, without a BrokenPipeError traceback."""
    if not _wants_help(argv):
        return main(argv)
    try:
        try:
            main(argv)
        except SystemExit as done:
            if done.code not in (0, None):
                raise
        print("\n" + trainer_listing())
        sys.stdout.flush()  # inside the try: a closed pipe raises here, not at interpreter exit
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit-time flush has nowhere to fail
    raise SystemExit(0)


def train(argv: list[str] | None = None) -> None:
    """`implicit-reasoning-train`: a training job, the offline demo (no model_name_or_path), or a re-launch
    under `accelerate launch --config_file X` (X an accelerate config's path or shipped name)."""
    argv = _argv(argv)
    load_env()
    from .pipeline import (end_distributed, hide_secret_flags, parse_training_args, relaunch_command, run_training,
                           split_config_file)
    from .runtime.quiet import quiet_notices

    argv, sys.argv[1:] = hide_secret_flags(argv), hide_secret_flags(sys.argv[1:])  # wandb records sys.argv
    command = relaunch_command(argv, sys.argv[0])
    if command is not None:
        os.execvp(command[0], command)
    name, config = _run(lambda args: parse_training_args(split_config_file(args)), argv)
    quiet_notices(config)  # other libraries' notices that do not concern this run (runtime/quiet.py)
    if config.model_name_or_path is None:
        from .demo import run_demo

        run_demo(name, config)
    else:
        metrics = run_training(name, config).after
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    end_distributed()  # only after success: a process that raised must not wait in a barrier


def evaluate(argv: list[str] | None = None) -> None:
    """`implicit-reasoning-eval`: greedy accuracy and maj@k of a checkpoint, the way its trainer evaluates."""
    argv = _argv(argv)
    load_env()
    from transformers import HfArgumentParser

    from .evaluate import EvaluationArguments, run_evaluation

    def main(args):  # flags that are not EvaluationArguments set the trainer's config fields (--cot_length 32)
        from .runtime.quiet import quiet_notices

        parser = HfArgumentParser(EvaluationArguments, epilog="Any field of the trainer's config is a flag too "
                                                              "(--cot_length 32 --instruction ...).")
        parsed, rest = parser.parse_args_into_dataclasses(args=args, return_remaining_strings=True)
        quiet_notices(parsed)  # an evaluation reports to nothing and uses no DeepSpeed
        return run_evaluation(parsed, flags=rest)

    summary = _run(main, argv)
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()})


def fragility(argv: list[str] | None = None) -> None:
    """`implicit-reasoning-fragility`: the drop in answer log-prob when saved CoTs are damaged."""
    argv = _argv(argv)
    load_env()
    from .analysis.fragility import main

    _run(main, argv)


def plot(argv: list[str] | None = None) -> None:
    """`implicit-reasoning-plot`: PNG curves, a summary grid and a CSV of runs' logged metrics."""
    argv = _argv(argv)
    import matplotlib

    matplotlib.use("Agg")
    from .analysis.plotting import main

    _run(main, argv)


def benchmark(argv: list[str] | None = None) -> None:
    """`implicit-reasoning-benchmark`: per-update timings of our trainers, optionally against TRL's RLOOTrainer."""
    argv = _argv(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported; --threads sets torch's own count
    load_env()
    from .analysis.benchmark import main

    _run(main, argv)


def compare(argv: list[str] | None = None) -> None:
    """`implicit-reasoning-compare`: every trainer on the demo task from one shared warm start per seed, for the
    same number of generated tokens, scored by one evaluation; writes methods.md / .json / _*.png."""
    argv = _argv(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    load_env()
    import matplotlib

    matplotlib.use("Agg")
    from .demo.compare import main

    _run(main, argv)
