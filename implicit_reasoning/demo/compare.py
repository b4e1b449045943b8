"""Every trainer on one footing: one shared warm start per seed, one generated-token budget, one evaluation.

`implicit-reasoning-compare` (`scripts/compare_methods.py`) runs, on the built-in arithmetic task:

1. per seed, ONE warm start (`warm_start` job): the demo's mixed careful/guess SFT (500 updates)
   in the shared format, saved to RUNS/seed<S>/warm_start and evaluated;
2. per seed and method (`METHODS`), a job that loads that checkpoint, trains until the method's
   generated tokens reach the budget, and evaluates with the same code.

The shared format is LaTRO's (the registry's): prompt "Question: 3 + 4 + 5\\nLet's think step by
step.\\n", completion "3 + 4 = 7. 7 + 5 = 12. The answer is 12.". STaR takes it through its
`cot_trigger`, Markovian through `instruction` / `reasoning_prefix` / `answer_marker`
(`MARKOVIAN_SHARED`); LaTRO, SFT and PPO use it by default.

Budget: generated tokens, counted on every `generate` call of the policy and of its frozen copy
(Markovian's critic baseline) during training, real tokens only (not the padding of rows that
stopped). A method stops at the first check point where the budget is reached or where one more
block of generation would overshoot it by more than it now falls short (`should_stop`); check points
are the ends of rollouts (PPO: every `updates_per_rollout` updates) and of STaR's iterations. SFT
generates nothing: it trains its demo's 40 updates and is reported at 0 tokens.

Evaluation (`evaluate`): the same 200 held-out questions of the seed's eval split, greedy accuracy,
maj@k (k samples at temperature 1), the mean rationale length in tokens (the completion before
"The answer is"), the degeneration rate (STaR's check) and the fragility (the drop of log P(gold answer)
when every digit of the CoT is replaced, with the question redacted and kept).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BUDGET = 60_000  # generated tokens per RL method: 2 STaR-DPO / 3 STaR-SFT iterations, ~60 LaTRO updates
QUICK_BUDGET = 1_500
EVAL_SEED = 1234  # maj@k samples are drawn from a generator of their own: training RNG is untouched
SHARED_PREFIX = "Let's think step by step.\n"
MARKOVIAN_SHARED = dict(instruction="Question:", reasoning_prefix=SHARED_PREFIX, answer_marker=" The answer is")
COMMON = dict(dataset_name="arithmetic", report_to="none", save_strategy="no", disable_tqdm=True, num_evaluations=0)
RL_CAP = dict(max_steps=100_000)  # the budget stops the run

# method -> (trainer, shipped demo config, overrides): each demo's own hyperparameters, the shared format
METHODS = {
    "sft": ("sft", "demo_sft", {}),
    "latro": ("latro", "demo_latro", RL_CAP),
    "markovian": ("markovian", "demo_markovian", {**MARKOVIAN_SHARED, **RL_CAP}),
    "non_markovian": ("markovian", "demo_non_markovian", {**MARKOVIAN_SHARED, **RL_CAP}),
    "star_sft": ("star", "demo_star", dict(cot_trigger="Let's think step by step.", num_iterations=12)),
    "star_dpo": ("star", "demo_star_dpo", dict(cot_trigger="Let's think step by step.", num_iterations=12)),
    "ppo": ("ppo_curriculum", "demo_ppo_curriculum", RL_CAP),
}
QUICK = {  # a few updates per method: checks the pipeline end to end
    "sft": dict(max_steps=4),
    "star_sft": dict(dataset_config="num_terms=3,max_value=10,num_examples=24", start_steps=2, num_iterations=3),
    "star_dpo": dict(dataset_config="num_terms=3,max_value=10,num_examples=12", start_steps=2, num_iterations=3),
    "ppo": dict(per_device_train_batch_size=16),
}
QUICK_WARM_START_STEPS = 40
DEFAULT_OUT, DEFAULT_RUNS = "benchmarks", "outputs/compare"
QUICK_OUT, QUICK_RUNS = "outputs/compare_quick", "outputs/compare_quick/runs"  # a check, not the committed results


@dataclass
class EvalSettings:
    """What `evaluation.accuracy.evaluate_dataset` reads: greedy first completion, then k samples at temperature 1."""

    max_eval_samples: int = 200
    eval_num_samples: int = 8
    per_device_eval_batch_size: int = 200
    max_prompt_length: int = 128
    eval_budget: int = 56  # the LaTRO / SFT default: response_length (24) + 32
    eval_temperature: float = 0.0

    def eval_sampling(self) -> dict:
        return dict(temperature=1.0, top_p=1.0, top_k=0)


def eval_settings(quick: bool) -> EvalSettings:
    return EvalSettings(max_eval_samples=40, eval_num_samples=2) if quick else EvalSettings()


# ------------------------------------------------------------------------------ configs
def method_config(method: str, seed: int, output_dir: str, quick: bool = False):
    """The method's config: its demo YAML, COMMON, the shared-format overrides, the seed (and QUICK)."""
    import yaml

    from ..config_files import resolve_config
    from ..pipeline import check_config_keys
    from ..tiny.assets import DEMO_DATASET_CONFIG
    from ..trainer import trainer_entry

    trainer, shipped, overrides = METHODS[method]
    source = resolve_config(shipped)
    with open(source) as f:
        values = yaml.safe_load(f) or {}
    values.pop("trainer", None)
    values.update(COMMON, dataset_config=values.get("dataset_config", DEMO_DATASET_CONFIG), **overrides)
    values.update(QUICK.get(method, {}) if quick else {}, seed=seed, output_dir=output_dir)
    config_cls = trainer_entry(trainer)[1]
    check_config_keys(values, config_cls, source)
    return trainer, config_cls(**values)


def eval_rows(seed: int, tokenizer):
    """The held-out questions every method is scored on: the seed's eval split in the shared format."""
    from ..data.registry import load_task_dataset
    from ..tiny.assets import DEMO_DATASET_CONFIG

    return load_task_dataset("arithmetic", "eval", tokenizer, dataset_config=DEMO_DATASET_CONFIG, seed=seed)


# ------------------------------------------------------------------------------ counting
class GeneratedTokens:
    """Counts the tokens `generate` produces on the models it is attached to (padding after a stop excluded)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id, self.total, self.paused = pad_token_id, 0, False

    def attach(self, model) -> None:
        original = model.generate

        def generate(*args, **kwargs):
            out = original(*args, **kwargs)
            if not self.paused:
                ids = kwargs.get("input_ids", args[0] if args else None)
                sequences = getattr(out, "sequences", out)
                self.total += int((sequences[:, ids.shape[-1]:] != self.pad_token_id).sum())
            return out

        model.generate = generate


def should_stop(tokens: int, block: int, budget: int) -> bool:
    """Stop once the budget is reached, or when one more block like the last would overshoot it by more than
    the run now falls short of it (the check point closest to the budget)."""
    return budget > 0 and (tokens >= budget or tokens + block / 2 > budget)


# ------------------------------------------------------------------------------ evaluation
def rationale_of(completion: str) -> str:
    """The completion before its answer statement."""
    return completion.split("The answer is")[0].strip()


def fragility(model, tokenizer, questions, rationales, answers, redact: bool) -> float:
    """Mean drop of log P(gold answer | context, CoT) when every digit of the CoT is replaced at random."""
    from ..analysis.fragility import fragility_table

    samples = [dict(question=q, rationale=r, answer=a) for q, r, a in zip(questions, rationales, answers) if r]
    if not samples:
        return float("nan")
    settings = dict(markovian=redact, use_chat_template=True, **MARKOVIAN_SHARED)
    table, _ = fragility_table(model, tokenizer, samples, settings, ("digit_replace",), (0.0, 1.0), 0, 200)
    return table["digit_replace"]["mean_drop"][1]


def evaluate(model, tokenizer, rows, settings: EvalSettings, full: bool = True) -> dict:
    """The one evaluation: greedy accuracy (+ with `full`: maj@k, rationale length, degeneration, fragility)."""
    import dataclasses

    import torch

    from ..evaluation.accuracy import evaluate_dataset, summarize_records
    from ..objectives.star import is_degenerate
    from ..runtime.models import eval_mode

    settings = settings if full else dataclasses.replace(settings, eval_num_samples=1)
    with torch.random.fork_rng(devices=[]), eval_mode(model):
        torch.manual_seed(EVAL_SEED)
        records = evaluate_dataset(model, tokenizer, rows, "arithmetic", settings)
    summary = summarize_records(records)
    rationales = [rationale_of(r["completion"]) for r in records]
    result = {"accuracy": summary["accuracy"], "num_questions": len(records),
              "rationale_tokens": sum(len(tokenizer(t).input_ids) for t in rationales) / max(len(records), 1)}
    if full:
        k = settings.eval_num_samples
        result[f"maj@{k}"] = summary.get(f"maj@{k}", summary["accuracy"])
        result["degeneration_rate"] = sum(is_degenerate(r["completion"]) for r in records) / max(len(records), 1)
        picked = rows.select([r["index"] for r in records])
        for name, redact in (("fragility_redacted", True), ("fragility_question_kept", False)):
            result[name] = fragility(model, tokenizer, picked["question"], rationales, picked["groundtruth"], redact)
    return result


# ------------------------------------------------------------------------------ jobs
def warm_start_dir(runs: Path, seed: int) -> Path:
    return runs / f"seed{seed}" / "warm_start"


def run_warm_start(seed: int, runs: Path, quick: bool = False) -> dict:
    """Train the seed's shared warm start (LaTRO's SFT rows: the registry's format), save and evaluate it."""
    import transformers

    from ..tiny.assets import build_demo_model, build_demo_tokenizer
    from ..trainer import LatroTrainer, SFTBaselineTrainer
    from .jobs import save_warm_start, warm_start_config, warm_start_rows

    directory = warm_start_dir(runs, seed)
    started = time.time()
    transformers.set_seed(seed)
    _, config = method_config("latro", seed, str(directory.parent / "warm_start_run"), quick)
    tokenizer = build_demo_tokenizer()
    model = build_demo_model(tokenizer, seed=seed)
    rows = warm_start_rows(config, tokenizer, LatroTrainer)
    args = warm_start_config(str(directory.parent / "warm_start_run"), config)
    if quick:
        args.max_steps = QUICK_WARM_START_STEPS
    SFTBaselineTrainer(model, args, train_dataset=rows, processing_class=tokenizer).train()
    save_warm_start(model, tokenizer, str(directory), config, "latro")  # temp folder + rename: crash-safe
    train_seconds = time.time() - started
    final = evaluate(model, tokenizer, eval_rows(seed, tokenizer), eval_settings(quick))
    return {"method": "warm_start", "seed": seed, "tokens": 0, "steps": args.max_steps, "final": final,
            "train_seconds": round(train_seconds, 1), "wall_seconds": round(time.time() - started, 1), "curve": []}


class CompareCallback:
    """Counts, checks the budget at the check points, evaluates (greedy) at every quarter of the budget."""

    def __init__(self, job: dict):
        self.job, self.last_tokens, self.next_point = job, 0, 1
        self.checks: list[int] = []  # tokens at every check point (the budget rule's record)

    def check(self, step: int) -> bool:
        """Record a curve point when due; True when the run should stop."""
        job = self.job
        tokens, budget = job["counter"].total, job["budget"]
        stop = should_stop(tokens, tokens - self.last_tokens, budget)
        self.checks.append(tokens)
        self.last_tokens = tokens
        due = tokens >= self.next_point * budget / 4 if budget else step >= self.next_point * job["max_steps"] / 4
        if due or stop:
            while (tokens if budget else step) >= self.next_point * (budget or job["max_steps"]) / 4:
                self.next_point += 1
            self.point(step, tokens)
        return stop

    def point(self, step: int, tokens: int) -> None:
        job = self.job
        job["counter"].paused = True
        started = time.time()
        metrics = evaluate(job["policy"](), job["tokenizer"], job["rows"], job["settings"], full=False)
        job["eval_seconds"] += time.time() - started
        job["counter"].paused = False
        seconds = time.time() - job["started"] - job["eval_seconds"]
        job["curve"].append({"step": step, "tokens": tokens, "train_seconds": round(seconds, 1), **metrics})


def _callback(compare: CompareCallback, check_steps):
    from transformers import TrainerCallback

    class Callback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if check_steps(state.global_step) and compare.check(state.global_step):
                control.should_training_stop = True
            return control

    return Callback()


def check_steps_of(trainer):
    """When a check is allowed: at the end of every rollout (of its updates), or of every STaR iteration."""
    schedule = getattr(trainer, "schedule", None)
    if schedule is not None:
        ends = {sum(schedule[: i + 1]) for i in range(len(schedule))}
        return lambda step: step in ends
    every = getattr(trainer, "updates_per_rollout", 1)
    return lambda step: step % every == 0


def run_method(method: str, seed: int, runs: Path, budget: int, quick: bool = False) -> dict:
    """Load the seed's warm start, train `method` to the budget, evaluate; the job's record."""
    import transformers

    from ..trainer import trainer_class
    from .jobs import demo_threads

    demo_threads()
    transformers.set_seed(seed)
    started = time.time()
    name, config = method_config(method, seed, str(runs / f"seed{seed}" / method), quick)
    directory = str(warm_start_dir(runs, seed))
    model = transformers.AutoModelForCausalLM.from_pretrained(directory)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    cls = trainer_class(name, config)
    trainer = cls(model, config, train_dataset=cls.load_split(config, "train", tokenizer), processing_class=tokenizer)
    counter = GeneratedTokens(tokenizer.pad_token_id)
    for generator in (trainer.unwrapped_policy(), trainer.ref_model):
        if generator is not None:
            counter.attach(generator)
    budget = 0 if method == "sft" else budget
    job = dict(counter=counter, budget=budget, max_steps=config.max_steps, policy=trainer.unwrapped_policy,
               tokenizer=tokenizer, rows=eval_rows(seed, tokenizer), settings=eval_settings(quick), curve=[],
               started=started, eval_seconds=0.0)
    compare = CompareCallback(job)
    compare.point(0, 0)
    trainer.add_callback(_callback(compare, check_steps_of(trainer) if budget else lambda step: True))
    trainer.train()
    if not job["curve"] or job["curve"][-1]["step"] != trainer.state.global_step:
        compare.point(trainer.state.global_step, counter.total)
    train_seconds = time.time() - started - job["eval_seconds"]
    tokens, counter.paused = counter.total, True  # the evaluation's generations are not the method's
    final = evaluate(trainer.unwrapped_policy(), tokenizer, job["rows"], job["settings"])
    logs = [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in trainer.state.log_history]
    return {"method": method, "trainer": name, "seed": seed, "budget": budget, "tokens": tokens,
            "steps": trainer.state.global_step, "final": final, "curve": job["curve"], "logs": logs,
            "check_tokens": compare.checks if budget else [],
            "train_seconds": round(train_seconds, 1), "wall_seconds": round(time.time() - started, 1)}


# ------------------------------------------------------------------------------ orchestration
def job_file(runs: Path, method: str, seed: int) -> Path:
    return runs / f"seed{seed}" / f"{method}.json"


def run_job(method: str, seed: int, runs: Path, budget: int, quick: bool) -> dict:
    """One job in a subprocess of its own (one torch thread); its record, read from its JSON."""
    import implicit_reasoning

    out = job_file(runs, method, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "implicit_reasoning.demo.compare", "--job", method, "--seed", str(seed),
               "--runs", str(runs), "--budget", str(budget), *(["--quick"] if quick else [])]
    package_root = str(Path(implicit_reasoning.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    with open(out.with_suffix(".log"), "w") as log:
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{method} seed {seed} failed; see {out.with_suffix('.log')}:\n"
                           + out.with_suffix(".log").read_text()[-3000:])
    print(f"[compare] {method} seed {seed} done", flush=True)
    return json.loads(out.read_text())


def run_comparison(methods, seeds, budget: int, jobs: int, runs: Path, quick: bool = False) -> list[dict]:
    """Warm starts first (one per seed), then every (method, seed), `jobs` at a time."""
    with ThreadPoolExecutor(jobs) as pool:
        records = list(pool.map(lambda s: run_job("warm_start", s, runs, budget, quick), seeds))
        tasks = [(m, s) for m in methods for s in seeds]
        records += list(pool.map(lambda task: run_job(*task, runs, budget, quick), tasks))
    return records


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="implicit-reasoning-compare", description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2 (--quick: 0)")
    parser.add_argument("--budget", type=int, default=None,
                        help=f"generated tokens per RL method (default {DEFAULT_BUDGET}; --quick: {QUICK_BUDGET})")
    parser.add_argument("--jobs", type=int, default=2, help="jobs at a time (one torch thread each)")
    parser.add_argument("--out", default=None, help="methods.md, methods.json, methods_*.png go here (default "
                        f"{DEFAULT_OUT}; --quick: {QUICK_OUT}, never over the committed results)")
    parser.add_argument("--runs", default=None, help=f"per-job checkpoints, records and logs (default {DEFAULT_RUNS}; "
                        f"--quick: {QUICK_RUNS})")
    parser.add_argument("--quick", action="store_true", help="1 seed, a few updates per method, 40 questions")
    parser.add_argument("--report", default=None, metavar="METHODS_JSON",
                        help="no runs: rewrite methods.md and the figures in --out from a methods.json")
    parser.add_argument("--job", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = [0] if args.quick else [0, 1, 2]
    args.out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    args.runs = args.runs or (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds {' '.join(map(str, args.seeds))}: a seed twice (its jobs would share one folder)")
    if args.budget is None:
        args.budget = QUICK_BUDGET if args.quick else DEFAULT_BUDGET
    if args.budget < 1:
        parser.error(f"--budget {args.budget}: must be >= 1 generated token")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be >= 1")
    return args


def main(argv=None) -> dict | None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    runs = Path(args.runs)
    if args.job is not None:  # a subprocess: one job
        from .jobs import demo_threads

        demo_threads()
        job = run_warm_start if args.job == "warm_start" else lambda *a, **k: run_method(args.job, *a, **k)
        record = job(args.seed, runs, **({} if args.job == "warm_start" else {"budget": args.budget}),
                     quick=args.quick)
        job_file(runs, args.job, args.seed).write_text(json.dumps(record, indent=1))
        return None
    from ..analysis.compare_report import write_report

    if args.report is not None:
        data = json.loads(Path(args.report).read_text())
        args.budget = data["budget_tokens"]
        return write_report(data["records"], Path(args.out), data["command"], data["total_seconds"], args)
    started = time.time()
    records = run_comparison(args.methods, args.seeds, args.budget, args.jobs, runs, args.quick)
    command = "implicit-reasoning-compare " + " ".join(sys.argv[1:] if argv is None else argv)
    return write_report(records, Path(args.out), command.strip(), time.time() - started, args)


if __name__ == "__main__":
    main()
