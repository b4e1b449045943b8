#!/usr/bin/env bash
# Evaluate a checkpoint: greedy accuracy + maj@k, per-question JSONL and summary JSON.
#   bash scripts/evaluation.sh                                   # the demo checkpoint (outputs/demo_latro)
#   bash scripts/evaluation.sh --model_name_or_path DIR --dataset_name gsm8k --split test --eval_num_samples 8
set -euo pipefail
cd "$(dirname "$0")/.."
exec python scripts/evaluation.py "$@"
