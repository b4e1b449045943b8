"""Fragility of chains of thought: how much does the answer log-prob drop when the CoT is damaged?

For each checkpoint (a Markovian run and a non-Markovian ablation) and each saved CoT, the
CoT text is perturbed at 0, 20, ..., 100 % and the mean log-prob of the gold answer is
re-scored from the checkpoint's own scoring context (question redacted for the Markovian
run, kept for the ablation) with the library's one scoring stack. A CoT the model really
relies on shows a large drop. `scripts/fragility.py` is a thin wrapper over `main`.

Samples default to each checkpoint's own `samples.jsonl` (written during training: fields
`prompt` or `question`, `rationale`, `answer`), the CoTs of its last logged step unless
`--all_steps`; the output says how many CoTs each run used (and warns below 20). Only Markovian-trainer
runs are scored (their run_config.json says so); others are refused with the reason. Prints a table
(`--json`: JSON) and writes `fragility.json` (mean / std drop per model, perturbation and fraction)
and one PNG per perturbation plus `fragility_all.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import sys

import torch

from ..objectives.markovian import ANSWER, ANSWER_MARKER, REASONING_PREFIX, MarkovianPrompts
from ..runtime.models import encode_continuation, eval_mode, load_tokenizer
from ..scoring.packing import pack_rows
from ..scoring.window import score_rows
from ..trainer.core.state import load_run_config
from ..trainer.markovian.config import MARKOVIAN_INSTRUCTION

PERTURBATIONS = ("delete", "truncate_front", "truncate_back", "digit_replace", "char_replace")
FRACTIONS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
ALPHANUMERIC = string.ascii_letters + string.digits


# ------------------------------------------------------------------------ perturbations
def _replace(text: str, positions: list[int], alphabet: str, rng: random.Random) -> str:
    chars = list(text)
    for i in positions:
        chars[i] = rng.choice([c for c in alphabet if c != chars[i]])
    return "".join(chars)


def perturb(text: str, kind: str, fraction: float, rng: random.Random) -> str:
    """Damage ``round(fraction * n)`` characters of ``text`` (digits only for digit_replace)."""
    n = round(fraction * len(text))
    if kind == "delete":
        drop = set(rng.sample(range(len(text)), n))
        return "".join(c for i, c in enumerate(text) if i not in drop)
    if kind == "truncate_front":
        return text[n:]
    if kind == "truncate_back":
        return text[: len(text) - n]
    if kind == "digit_replace":
        digits = [i for i, c in enumerate(text) if c.isdigit()]
        return _replace(text, rng.sample(digits, round(fraction * len(digits))), string.digits, rng)
    if kind == "char_replace":
        return _replace(text, rng.sample(range(len(text)), n), ALPHANUMERIC, rng)
    raise ValueError(f"unknown perturbation {kind!r}; choose from {PERTURBATIONS}")


# ------------------------------------------------------------------------------ scoring
FEW_COTS = 20  # below this many CoTs a mean drop is noisy: say so


def load_samples(path: str, limit: int | None, all_steps: bool = False) -> list[dict]:
    """CoTs from a samples file: by default those of its LAST logged step (the trained policy's; the file
    grows at every log, so its first rows are the initial policy's). `all_steps` keeps every row."""
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            question = row.get("question", row.get("prompt"))
            if question is None or "rationale" not in row or "answer" not in row:
                raise ValueError(f"{path} line {number}: needs 'question' (or 'prompt'), 'rationale' and 'answer'")
            rows.append({"question": question, "rationale": row["rationale"], "answer": str(row["answer"]),
                         "step": row.get("step")})
    if not rows:
        raise ValueError(f"{path}: no samples")
    steps = [row["step"] for row in rows if row["step"] is not None]
    if steps and not all_steps:
        rows = [row for row in rows if row["step"] == max(steps)]
    return rows[:limit] if limit else rows


def run_settings(path: str, default_markovian: bool) -> dict:
    """(markovian, instruction, use_chat_template, reasoning_prefix, answer_marker) from the run's run_config.json.

    Only a Markovian run's CoTs can be scored: the answer is re-scored in the format that run trained with
    (instruction, reasoning prefix, answer marker), with the question redacted or kept as that run did. A run
    of another trainer (its samples are LaTRO / STaR / PPO prompts), one without a run_config.json, a use_vq
    run, or a run given as the wrong one of the two is refused, saying why."""
    config = load_run_config(path)
    which = "--markovian" if default_markovian else "--non_markovian"
    if not config:
        raise ValueError(f"{which} {path}: no run_config.json, so how its CoTs were written is unknown; fragility scores "
                         "the CoTs of a Markovian run (trainer: markovian), which saves one beside its model")
    if config.get("trainer") != "markovian":
        raise ValueError(f"{which} {path}: trained by {config.get('trainer')!r}, not markovian. Fragility re-scores a CoT "
                         "in the format the Markovian trainer writes (instruction, reasoning prefix, answer marker); a "
                         f"{config.get('trainer')} run's samples are not in that format and would be misread")
    if config.get("use_vq"):
        raise ValueError(f"{path}: a use_vq run has no text CoTs to perturb (its codes are quantised hidden states)")
    if "markovian" in config and bool(config["markovian"]) != default_markovian:
        other = "--non_markovian" if default_markovian else "--markovian"
        raise ValueError(f"{which} {path}: its run_config says markovian={config['markovian']}; pass it as {other}")
    return {
        "markovian": bool(config.get("markovian", default_markovian)),
        "instruction": config.get("instruction", MARKOVIAN_INSTRUCTION),
        "use_chat_template": bool(config.get("use_chat_template", True)),
        "reasoning_prefix": config.get("reasoning_prefix", REASONING_PREFIX),
        "answer_marker": config.get("answer_marker", ANSWER_MARKER),
    }


def answer_logprobs(model, tokenizer, rows: list[tuple[str, str, str]], settings: dict, batch_size: int) -> list[float]:
    """Mean log P(answer tokens | scoring context, CoT) for (question, cot, answer) rows; one forward each."""
    prompts = MarkovianPrompts(tokenizer, settings["instruction"], settings["markovian"], settings["use_chat_template"],
                               reasoning_prefix=settings.get("reasoning_prefix", REASONING_PREFIX),
                               answer_marker=settings.get("answer_marker", ANSWER_MARKER))
    prefixes = [prompts.scoring_ids(q) for q, _, _ in rows]
    cots = [encode_continuation(tokenizer, cot) for _, cot, _ in rows]
    packed = _pack_unaligned(prompts, prefixes, cots, [a for _, _, a in rows])
    with eval_mode(model):
        means = score_rows(model, packed, (ANSWER,), batch_size, reduce="mean")[ANSWER]
    return means.tolist()


def _pack_unaligned(prompts, prefixes, cots, answers) -> dict:
    """Scoring rows for CoTs of different lengths (perturbed texts): right-padded, not column-aligned."""
    segments = [prefixes, cots, [prompts.marker_ids] * len(cots), [prompts.answer_ids(a) for a in answers]]
    return pack_rows(segments, prompts.tokenizer.pad_token_id)


def fragility_table(model, tokenizer, samples, settings, perturbations, fractions, seed, batch_size):
    """{perturbation: {"mean_drop": [...], "std_drop": [...]}} over fractions, plus the unperturbed log-prob."""
    texts = {}
    for i, sample in enumerate(samples):
        for kind in perturbations:
            for fraction in fractions:
                rng = random.Random(f"{seed}-{i}-{kind}-{fraction}")
                texts[(i, kind, fraction)] = perturb(sample["rationale"], kind, fraction, rng)
    unique = sorted({(i, t) for (i, _, _), t in texts.items()} | {(i, s["rationale"]) for i, s in enumerate(samples)})
    rows = [(samples[i]["question"], t, samples[i]["answer"]) for i, t in unique]
    score = dict(zip(unique, answer_logprobs(model, tokenizer, rows, settings, batch_size)))
    original = [score[(i, s["rationale"])] for i, s in enumerate(samples)]  # identical text -> identical score
    table = {}
    for kind in perturbations:
        drops = torch.tensor(
            [[original[i] - score[(i, texts[(i, kind, f)])] for f in fractions] for i in range(len(samples))]
        )
        std = drops.std(dim=0, unbiased=False)
        table[kind] = {"mean_drop": drops.mean(dim=0).tolist(), "std_drop": std.tolist()}
    return table, sum(original) / len(original)


# ------------------------------------------------------------------------------- plots
def plot(results: dict, output_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = [100 * f for f in results["fractions"]]
    paths, kinds = [], results["perturbations"]
    grid, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.5), squeeze=False)
    for column, kind in enumerate(kinds):
        single, ax = plt.subplots(figsize=(5, 3.5))
        for axis in (ax, axes[0][column]):
            for label, model in results["models"].items():
                axis.plot(fractions, model["drop"][kind]["mean_drop"], marker="o", label=label)
            axis.set(title=kind, xlabel="perturbed (%)", ylabel="drop in answer log-prob")
            axis.legend()
        single.tight_layout()
        paths.append(os.path.join(output_dir, f"fragility_{kind}.png"))
        single.savefig(paths[-1])
        plt.close(single)
    grid.tight_layout()
    paths.append(os.path.join(output_dir, "fragility_all.png"))
    grid.savefig(paths[-1])
    plt.close(grid)
    return paths


# -------------------------------------------------------------------------------- main
def parse_args(argv):
    parser = argparse.ArgumentParser(prog="implicit-reasoning-fragility", description=__doc__.split("\n")[0])
    parser.add_argument("--markovian", required=True, help="Markovian run (model + tokenizer + run_config.json).")
    parser.add_argument("--non_markovian", required=True, help="Non-Markovian (ablation) Markovian-trainer run.")
    parser.add_argument("--samples", default=None, help="JSONL of CoTs for both (default: each dir's samples.jsonl).")
    parser.add_argument("--output_dir", default="outputs/fragility")
    parser.add_argument("--perturbations", nargs="+", default=list(PERTURBATIONS), choices=PERTURBATIONS)
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--all_steps", action="store_true",
                        help="Use the CoTs of every logged step (default: the last step's, the trained policy's).")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="Print the results as JSON instead of a table "
                        "(fragility.json in --output_dir has them either way).")
    args = parser.parse_args(argv)
    if any(not 0 <= f <= 1 for f in args.fractions):
        parser.error(f"--fractions must lie in [0, 1], got {args.fractions}")
    return args


def describe_samples(path: str, samples: list[dict], args) -> str:
    """Which CoTs were scored: how many, from which logged step(s) of which file (and a warning when few)."""
    steps = sorted({s["step"] for s in samples if s.get("step") is not None})
    where = ("every logged step" if args.all_steps else f"step {steps[-1]}, the last logged one") if steps else "no step"
    line = f"{len(samples)} CoTs from {path} ({where})"
    if len(samples) < FEW_COTS:
        line += (f"; fewer than {FEW_COTS}: the mean drops are noisy. --all_steps scores the CoTs of every logged "
                 "step; num_logged_samples logs more rows per step")
    return line


def evaluate_checkpoint(path, default_markovian, args) -> dict:
    from transformers import AutoModelForCausalLM

    settings = run_settings(path, default_markovian)
    source = args.samples or os.path.join(path, "samples.jsonl")
    samples = load_samples(source, args.max_samples, args.all_steps)
    tokenizer = load_tokenizer(path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
    table, original = fragility_table(
        model, tokenizer, samples, settings, args.perturbations, args.fractions, args.seed, args.batch_size,
    )
    return {"path": path, "markovian": settings["markovian"], "num_samples": len(samples), "original_logprob": original,
            "samples": describe_samples(source, samples, args), "drop": table}


def format_table(results: dict) -> str:
    """The mean drop (nats) per perturbation, model and damaged share, as aligned text."""
    fractions = [f"{round(100 * f)}%" for f in results["fractions"]]
    label_width = max(len(label) for label in results["models"]) + 2
    lines = ["Drop of the mean log P(gold answer) when the CoT is damaged (nats; larger = the answer relies on the "
             "CoT more)", ""]
    for label, model in results["models"].items():
        lines.append(f"{label}: {model['samples']}; undamaged log P {model['original_logprob']:.3f}")
    header = f"{'perturbation':<16}{'model':<{label_width}}" + "".join(f"{f:>8}" for f in fractions)
    lines += ["", header, "-" * len(header)]
    for kind in results["perturbations"]:
        for i, (label, model) in enumerate(results["models"].items()):
            values = "".join(f"{v:>8.3f}" for v in model["drop"][kind]["mean_drop"])
            lines.append(f"{kind if i == 0 else '':<16}{label:<{label_width}}{values}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    runs = (("markovian", args.markovian, True), ("non_markovian", args.non_markovian, False))
    for _, path, markovian in runs:  # refuse either run before scoring the other
        run_settings(path, markovian)
    results = {"perturbations": args.perturbations, "fractions": args.fractions, "models": {}}
    for label, path, markovian in runs:
        results["models"][label] = evaluate_checkpoint(path, markovian, args)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "fragility.json"), "w") as f:
        json.dump(results, f, indent=2)
    results["plots"] = plot(results, args.output_dir)
    if args.json:
        print(json.dumps({label: m["drop"] for label, m in results["models"].items()}, indent=1))
    else:
        print(format_table(results))
        print(f"\nWrote {os.path.join(args.output_dir, 'fragility.json')} and {len(results['plots'])} plots there "
              "(--json prints the numbers as JSON).")
    return results
