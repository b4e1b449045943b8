#!/usr/bin/env bash
# Main job.
#   bash scripts/training.sh [flags]          no MODEL: the offline CPU demo (configs/demo_${TRAINER}.yaml), flags on top
#                                             (bash scripts/training.sh --max_steps 10)
#   MODEL=meta-llama/Llama-3.1-8B-Instruct DATASET=gsm8k bash scripts/training.sh [extra flags]
#       launches: accelerate launch --config_file $ACCELERATE_CONFIG scripts/training.py --trainer $TRAINER ...
# Environment: TRAINER (latro), MODEL, DATASET (gsm8k), ACCELERATE_CONFIG (configs/8gpu.yaml when GPUs
# are present, else configs/cpu.yaml), TRAIN_CONFIG (a training YAML instead of MODEL/DATASET), OUTPUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

TRAINER="${TRAINER:-latro}"
names_a_model=0
for arg in "$@"; do [[ "$arg" == --model_name_or_path* ]] && names_a_model=1; done
if [[ -z "${MODEL:-}" && -z "${TRAIN_CONFIG:-}" && $names_a_model -eq 0 ]]; then
  # the demo needs nothing from a hub: say so, so that no library tries the network; extra flags override the YAML
  HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}" \
    exec python scripts/training.py "configs/demo_${TRAINER}.yaml" "$@"
fi

if [[ -z "${ACCELERATE_CONFIG:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    ACCELERATE_CONFIG=configs/8gpu.yaml
  else
    ACCELERATE_CONFIG=configs/cpu.yaml
  fi
fi

if [[ -n "${TRAIN_CONFIG:-}" ]]; then
  exec accelerate launch --config_file "$ACCELERATE_CONFIG" scripts/training.py "$TRAIN_CONFIG"
fi
args=(--trainer "$TRAINER")
[[ -n "${MODEL:-}" ]] && args+=(--model_name_or_path "$MODEL" --dataset_name "${DATASET:-gsm8k}" \
  --output_dir "${OUTPUT_DIR:-outputs/${TRAINER}_${DATASET:-gsm8k}}")
exec accelerate launch --config_file "$ACCELERATE_CONFIG" scripts/training.py "${args[@]}" "$@"
