#!/usr/bin/env python
"""Plot the logged metrics of one or more Trainer runs (any trainer of this library).

  python scripts/plot_metrics.py outputs/latro                          # -> outputs/latro/plots/
  python scripts/plot_metrics.py runs/a runs/b --labels base sft --out plots/cmp
  python scripts/plot_metrics.py runs/a --metrics reward kl 'eval_maj@*'

Each RUN_DIR is a Trainer `output_dir`; its `trainer_state.json` is read from the
directory or, if absent there, from its newest `checkpoint-N` (largest N). Writes one
`<metric>.png` per metric that any run logged (runs overlaid), `summary.png` (grid of
the core metrics) and `metrics.csv` (wide format: run, step, one column per plotted
metric), then prints the files written. Details: implicit_reasoning.utils.plotting.
"""

import argparse
import sys

import matplotlib

matplotlib.use("Agg")

from implicit_reasoning.utils.plotting import DEFAULT_METRICS, plot_run_dirs  # noqa: E402


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="Trainer output_dir(s) to plot")
    parser.add_argument("--out", default=None, help="output directory (default: FIRST_RUN_DIR/plots)")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        metavar="NAME",
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


if __name__ == "__main__":
    main(sys.argv[1:])
