#!/usr/bin/env python
"""A/B timing of Markovian's full-vocabulary grad terms (KL to the critic + entropy + log p): the chunked
head (`scoring/head_terms.py`) against the full-logits formulas, interleaved in one process.

  OMP_NUM_THREADS=1 python benchmarks/perf/kl_head_ab.py [--vocab 151936] [--rows 16] [--cot 64] [--repeats 4]
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from test_head_terms import PAD, chunked_kl_step, full_kl_step, tiny_llama  # noqa: E402

from implicit_reasoning.scoring.packing import pack_rows  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--cot", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy, critic = tiny_llama(0, vocab=args.vocab, hidden=64), tiny_llama(1, vocab=args.vocab, hidden=64)
    g = torch.Generator().manual_seed(0)
    rows = pack_rows([[torch.randint(2, args.vocab, (k,), generator=g).tolist() for _ in range(args.rows)]
                      for k in (14, args.cot)], PAD, align=1)
    scored = rows["segment_ids"] == 2

    steps = {"chunked": lambda: chunked_kl_step(policy, critic, rows, scored),
             "full": lambda: full_kl_step(policy, critic, rows, scored)}
    times = {"chunked": [], "full": []}
    for _ in range(args.repeats):
        for name, step in steps.items():
            policy.zero_grad(set_to_none=True)
            start = time.perf_counter()
            step()
            times[name].append(round(time.perf_counter() - start, 2))
    print({name: sorted(values) for name, values in times.items()})


if __name__ == "__main__":
    main()
