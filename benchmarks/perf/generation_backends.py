#!/usr/bin/env python
"""Generation alone, interleaved in one process: `generation_backend` "hf" with each prompt prefilled per sample,
"hf" with one prefill per distinct prompt (`shared_prefill`, the trainers' default) and "hf_compiled" (static cache +
torch.compile), on one model, the same prompts, K samples each, exactly N new tokens.

  OMP_NUM_THREADS=1 python benchmarks/perf/generation_backends.py --model smollm2-135m --prompts 4 --k 4 \\
      --response_length 128 --repeats 3 --output_json benchmarks/perf/generation_backends_smollm2.json

The first hf_compiled call compiles (timed apart, `compile_s`); the medians are over the later calls. Weights: the
real checkpoint when installed (analysis/shapes.py), else random; prompts: analysis/workloads.py.
"""

import argparse
import json
import os
import statistics
import time

import torch

from implicit_reasoning.analysis.benchmark import BenchmarkArgs, workload_model
from implicit_reasoning.analysis.workloads import workload_rows
from implicit_reasoning.generation.sampling import generate, sampling_config
from implicit_reasoning.runtime.models import encode_prompt

VARIANTS = {"hf (prompt per sample)": ("hf", False), "hf (shared prefill)": ("hf", True),
            "hf_compiled": ("hf_compiled", False)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts_style", default="word_problems")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--response_length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    model, tokenizer, weights = workload_model(BenchmarkArgs(model=args.model, device="cpu"), None, "cpu")
    rows = workload_rows(args.prompts_style, args.prompts, tokenizer)
    prompts = [encode_prompt(tokenizer, r["queries"], 10**6) for r in rows for _ in range(args.k)]
    config = sampling_config(args.response_length, tokenizer.pad_token_id, None,
                             min_new_tokens=args.response_length)
    times = {name: [] for name in VARIANTS}
    first = {}
    for repeat in range(args.repeats + 1):  # call 0 warms up (and compiles hf_compiled)
        for name, (backend, shared) in VARIANTS.items():
            torch.manual_seed(repeat)
            start = time.perf_counter()
            out = generate(model, prompts, config, len(prompts), backend=backend, shared_prefill=shared)
            elapsed = time.perf_counter() - start
            assert out.shape == (len(prompts), args.response_length)
            if repeat:
                times[name].append(elapsed)
            else:
                first[name] = elapsed
    results = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/perf/generation_backends.py " + " ".join(
            f"--{k} {v}" for k, v in vars(args).items() if v is not None),
        "weights": weights, "rows": len(prompts), "new_tokens": args.response_length,
        "prompt_tokens": sorted({len(p) for p in prompts}), "load_average_1min": {"start": load,
                                                                                  "end": os.getloadavg()[0]},
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "first_call_s": first,
        "seconds": {name: {"median": statistics.median(v), "min": min(v), "max": max(v), "all": v}
                    for name, v in times.items()},
    }
    print(json.dumps(results, indent=2))
    if args.output_json:
        with open(args.output_json, "w") as f:
            f.write(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
