#!/usr/bin/env python
"""Evaluate a checkpoint (full model or LoRA adapter dir): greedy accuracy and maj@k (= `implicit-reasoning-eval`).

  python scripts/evaluation.py --model_name_or_path outputs/demo_latro   # the demo checkpoint training.sh wrote
  python scripts/evaluation.py --model_name_or_path outputs/latro_gsm8k --dataset_name gsm8k --split test

Writes <output_dir>/predictions.jsonl (one line per question) and <output_dir>/summary.json.
Dataset defaults come from the run_config.json that training saved next to the model.
Logic: implicit_reasoning.cli.evaluate.
"""

import sys

from implicit_reasoning.cli import evaluate

if __name__ == "__main__":
    evaluate(sys.argv[1:])
