#!/usr/bin/env python
"""Evaluate a checkpoint (full model or LoRA adapter dir): greedy accuracy and maj@k.

  python scripts/evaluation.py --model_name_or_path outputs/demo_latro   # the demo checkpoint training.sh wrote
  python scripts/evaluation.py --model_name_or_path outputs/latro_gsm8k --dataset_name gsm8k --split test

Writes <output_dir>/predictions.jsonl (one line per question) and <output_dir>/summary.json.
Dataset defaults come from the run_config.json that training saved next to the model.
"""

import sys

from dotenv import load_dotenv
from transformers import HfArgumentParser

from implicit_reasoning.evaluate import EvaluationArguments, run_evaluation

if __name__ == "__main__":
    load_dotenv()
    (args,) = HfArgumentParser(EvaluationArguments).parse_args_into_dataclasses(args=sys.argv[1:])
    summary = run_evaluation(args)
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()})
