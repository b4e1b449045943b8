#!/usr/bin/env bash
# SFT baseline on gold rationales. No arguments: the offline demo counterpart (configs/demo_sft.yaml).
#   MODEL=... DATASET=gsm8k bash scripts/sft_baseline.sh [extra flags]
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${MODEL:-}" && $# -eq 0 ]]; then
  exec python scripts/sft_baseline.py configs/demo_sft.yaml
fi
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-configs/cpu.yaml}"
args=()
[[ -n "${MODEL:-}" ]] && args+=(--model_name_or_path "$MODEL" --dataset_name "${DATASET:-gsm8k}" \
  --output_dir "${OUTPUT_DIR:-outputs/sft_${DATASET:-gsm8k}}")
exec accelerate launch --config_file "$ACCELERATE_CONFIG" scripts/sft_baseline.py "${args[@]}" "$@"
