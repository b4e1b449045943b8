#!/usr/bin/env bash
# Evaluate a checkpoint: greedy accuracy (+ maj@k with --eval_num_samples k), per-question JSONL and summary JSON.
#   bash scripts/evaluation.sh                                   # the demo checkpoint (outputs/demo_latro)
#   bash scripts/evaluation.sh --model_name_or_path DIR --dataset_name gsm8k --split test --eval_num_samples 8
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -eq 0 ]]; then
  set -- --model_name_or_path outputs/demo_latro   # what `bash scripts/training.sh` wrote
fi
exec python scripts/evaluation.py "$@"
