#!/usr/bin/env python
"""SFT on gold rationales: the baseline LaTRO is compared with (paper: LaTRO +9.6% over SFT on GSM8K).

  python scripts/sft_baseline.py --model_name_or_path M --dataset_name gsm8k --output_dir outputs/sft_gsm8k
  python scripts/sft_baseline.py configs/demo_sft.yaml       # the offline demo counterpart
"""

import sys

import yaml
from dotenv import load_dotenv
from transformers import HfArgumentParser

from implicit_reasoning.pipeline import run_sft_baseline
from implicit_reasoning.trainer import SFTBaselineConfig


def parse(argv: list[str]) -> SFTBaselineConfig:
    parser = HfArgumentParser(SFTBaselineConfig)
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        with open(argv[0]) as f:
            return parser.parse_dict(yaml.safe_load(f) or {})[0]
    return parser.parse_args_into_dataclasses(args=argv)[0]


if __name__ == "__main__":
    load_dotenv()
    config = parse(sys.argv[1:])
    if config.model_name_or_path is None:
        from implicit_reasoning.demo import run_sft_demo

        metrics = run_sft_demo(config)
    else:
        metrics = run_sft_baseline(config)
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
