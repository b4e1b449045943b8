#!/usr/bin/env python
"""SFT on gold rationales: the baseline LaTRO is compared with (paper: LaTRO +9.6% over SFT on GSM8K).

  python scripts/sft_baseline.py --model_name_or_path M --dataset_name gsm8k --output_dir outputs/sft_gsm8k
  python scripts/sft_baseline.py configs/demo_sft.yaml       # the offline demo counterpart

The same as `python scripts/training.py --trainer sft ...`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from training import main  # noqa: E402

if __name__ == "__main__":
    main(["--trainer", "sft", *sys.argv[1:]])
