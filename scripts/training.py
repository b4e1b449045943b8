#!/usr/bin/env python
"""Train a causal LM to reason before it answers (= the `implicit-reasoning-train` command).

  python scripts/training.py configs/demo_latro.yaml                 # a YAML as the only argument
  python scripts/training.py demo_latro                              # the same, by the shipped config's name
  python scripts/training.py --trainer latro --model_name_or_path M --dataset_name gsm8k ...
  accelerate launch --config_file configs/8gpu.yaml scripts/training.py --trainer latro ...
  accelerate launch scripts/training.py --config_file 8gpu ...       # re-launches itself
  python scripts/training.py --help                                  # the trainers
  python scripts/training.py --help --trainer markovian              # one trainer's fields

Every config field is a flag. With no `model_name_or_path`, the built-in offline demo runs:
a tiny model is built, warm-started with SFT, evaluated, trained with the chosen method and
evaluated again. Logic: implicit_reasoning.cli.train (loads .env; secrets never printed).
"""

import sys

from implicit_reasoning.cli import train as main

if __name__ == "__main__":
    main(sys.argv[1:])
