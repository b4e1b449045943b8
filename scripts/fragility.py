#!/usr/bin/env python
"""Fragility of chains of thought: the drop in answer log-prob when saved CoTs are damaged.

  python scripts/fragility.py --markovian outputs/markovian --non_markovian outputs/non_markovian \\
      [--samples FILE.jsonl] [--output_dir outputs/fragility]

Details: implicit_reasoning.analysis.fragility (= `implicit-reasoning-fragility`).
"""

import sys

from implicit_reasoning.cli import fragility as main

if __name__ == "__main__":
    main(sys.argv[1:])
