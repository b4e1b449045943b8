#!/usr/bin/env python
"""Train a causal LM to reason before it answers.

  python scripts/training.py configs/demo_latro.yaml                 # a YAML as the only argument
  python scripts/training.py --trainer latro --model_name_or_path M --dataset_name gsm8k ...
  accelerate launch --config_file configs/8gpu.yaml scripts/training.py --trainer latro ...
  accelerate launch scripts/training.py --config_file configs/8gpu.yaml ...   # re-launches itself
  python scripts/training.py --help                                  # the trainers
  python scripts/training.py --help --trainer markovian              # one trainer's fields

Every config field is a flag. With no `model_name_or_path`, the built-in offline demo runs:
a tiny model is built, warm-started with SFT, evaluated, trained with the chosen method and
evaluated again.
"""

import os
import sys

from dotenv import load_dotenv

from implicit_reasoning.pipeline import end_distributed, parse_training_args, relaunch_command, run_training, split_config_file


def main(argv: list[str]) -> None:
    load_dotenv()  # HF_TOKEN, WANDB_API_KEY, WANDB_PROJECT from .env; never printed
    command = relaunch_command(argv, sys.argv[0])
    if command is not None:
        os.execvp(command[0], command)
    name, config = parse_training_args(split_config_file(argv))
    if config.model_name_or_path is None:
        from implicit_reasoning.demo import run_demo

        run_demo(name, config)
    else:
        metrics = run_training(name, config).after
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    end_distributed()  # only after success: a process that raised must not wait in a barrier


if __name__ == "__main__":
    main(sys.argv[1:])
