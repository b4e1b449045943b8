#!/usr/bin/env python
"""Every trainer on the built-in arithmetic task from one shared warm start per seed, for the same number of
generated tokens, scored by one evaluation: benchmarks/methods.md, methods.json, methods_*.png.

  python scripts/compare_methods.py [--seeds 0 1 2] [--jobs 2] [--budget 40000] [--out benchmarks] [--quick]

Details: implicit_reasoning.demo.compare (= `implicit-reasoning-compare`).
"""

import sys

from implicit_reasoning.cli import compare as main

if __name__ == "__main__":
    main(sys.argv[1:])
