#!/usr/bin/env python
"""Plot the logged metrics of one or more Trainer runs (any trainer of this library).

  python scripts/plot_metrics.py outputs/latro                          # -> outputs/latro/plots/
  python scripts/plot_metrics.py runs/a runs/b --labels base sft --out plots/cmp
  python scripts/plot_metrics.py runs/a --metrics reward kl 'eval_maj@*'

Each RUN_DIR is a Trainer `output_dir`; its `trainer_state.json` is read from the
directory or, if absent there, from its newest `checkpoint-N` (largest N). Writes one
`<metric>.png` per metric that any run logged (runs overlaid), `summary.png` (grid of
the core metrics) and `metrics.csv` (wide format: run, step, one column per plotted
metric), then prints the files written. Details: implicit_reasoning.analysis.plotting
(= `implicit-reasoning-plot`).
"""

import sys

from implicit_reasoning.cli import plot as main  # selects matplotlib's Agg backend

if __name__ == "__main__":
    main(sys.argv[1:])
