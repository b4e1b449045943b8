#!/usr/bin/env python
"""A/B timing of Markovian's full-vocabulary grad terms (KL to the critic + entropy + log p): the chunked
head (`utils/head_terms.py`) against the full-logits formulas, interleaved in one process.

  OMP_NUM_THREADS=1 python benchmarks/perf/kl_head_ab.py [--vocab 151936] [--rows 16] [--cot 64] [--repeats 4]
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from test_head_terms import PAD, _as_context, tiny_llama  # noqa: E402

from implicit_reasoning.utils.head_terms import window_head_terms  # noqa: E402
from implicit_reasoning.utils.markovian import masked_entropy, masked_kl  # noqa: E402
from implicit_reasoning.utils.scoring import forward_window, pack_rows, token_logprobs  # noqa: E402


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

    def chunked():
        logps, entropy, kl, _ = window_head_terms(policy, lambda: _as_context(critic), rows, scored)
        (kl.sum() - entropy.sum() - logps.sum()).backward()

    def full():
        logits, window = forward_window(policy, rows, scored)
        with torch.no_grad():
            critic_logits, _ = forward_window(critic, rows, scored)
        cot = window["segment_ids"] == 2
        logps = token_logprobs(logits, window["input_ids"])
        (masked_kl(logits, critic_logits, cot).sum() - masked_entropy(logits, cot).sum() - logps.sum()).backward()

    times = {"chunked": [], "full": []}
    for _ in range(args.repeats):
        for name, step in (("chunked", chunked), ("full", full)):
            policy.zero_grad(set_to_none=True)
            start = time.perf_counter()
            step()
            times[name].append(round(time.perf_counter() - start, 2))
    print({name: sorted(values) for name, values in times.items()})


if __name__ == "__main__":
    main()
