#!/usr/bin/env python
"""Per-update benchmark of our LatroTrainer, optionally against TRL's RLOOTrainer on the same workload.

  OMP_NUM_THREADS=1 python scripts/benchmark.py --trainer latro --model tiny --prompts 4 --k 4 \\
      --response_length 64 --warmup 2 --updates 10 --compare_trl --output_json benchmarks/perf/latro_tiny.json

Prints a table; --output_json / --output_markdown save it. Method: docs/performance.md;
logic: implicit_reasoning.analysis.benchmark (= `implicit-reasoning-benchmark`).
"""

import sys

from implicit_reasoning.cli import benchmark as main

if __name__ == "__main__":
    main(sys.argv[1:])
