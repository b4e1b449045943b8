"""The offline demo job: warm start a tiny model, evaluate, train with a trainer, evaluate again.

Warm start: a short SFT on mixed-quality worked solutions. A share of the examples
(`DEMO_GUESS_FRACTION`) are quick guesses ("Roughly, 3 + 4 + 5 is 14.") whose answer is off
by 1-5, the rest careful step-by-step rationales. The SFT model therefore reasons carefully
on some questions and guesses on others; the RL trainers are rewarded for answers (LaTRO:
by the model's own likelihood of the gold answer), never told which style is better, and
must discover that careful reasoning is what makes the answer likely.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time

import torch
import transformers

from ..data.registry import load_task_dataset
from ..pipeline import build_trainer, is_resuming, run_training
from ..runtime.launch import deepspeed_requested
from ..tiny.assets import build_demo_model, build_demo_tokenizer
from ..trainer import SFTBaselineConfig, SFTBaselineTrainer, trainer_class
from ..trainer.core.checkpoints import crash_point, incomplete_reason, mark_complete
from ..trainer.core.output_dir import locked, refuse_earlier_run
from ..trainer.core.state import save_run_config
from ..trainer.ppo_curriculum.data import is_text_entry

DEMO_GUESS_FRACTION = 0.5
DEMO_GUESS_OFFSETS = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)
DEMO_WARM_START = dict(max_steps=500, per_device_train_batch_size=32, learning_rate=2e-3, warmup_steps=10)
DEMO_RESULTS_FILE = "demo_results.json"


def warm_start_dataset(dataset, guess_fraction: float = DEMO_GUESS_FRACTION, seed: int = 0):
    """Replace the rationale and response of a `guess_fraction` share of rows by a wrong quick guess.

    Adds `target`: the answer each row's completion states (the guess, or the gold answer).
    """
    rng = random.Random(seed)

    def maybe_guess(row):
        if rng.random() >= guess_fraction:
            return {"target": row["groundtruth"]}
        guess = int(row["groundtruth"]) + rng.choice(DEMO_GUESS_OFFSETS)
        return {
            "rationale": f"Roughly, {row['question']} is {guess}.",
            "responses": f" The answer is {guess}.",
            "target": str(guess),
        }

    return dataset.map(maybe_guess, desc="Warm-start data")


def warm_start_config(directory: str, config) -> SFTBaselineConfig:
    """The warm start's SFT settings (DEMO_WARM_START, cosine schedule, no saves), on the job's engine (DeepSpeed or not)."""
    return SFTBaselineConfig(
        output_dir=directory, lr_scheduler_type="cosine", weight_decay=0.0, logging_steps=100, save_strategy="no",
        report_to="none", seed=config.seed, disable_tqdm=True, max_prompt_length=config.max_prompt_length,
        deepspeed=config.deepspeed, use_cpu=not torch.cuda.is_available() and not deepspeed_requested(config),
        **DEMO_WARM_START,
    )


def warm_start_problem(directory: str) -> str | None:
    """None when `directory` holds a complete warm start, else why not (missing, or cut short while saved)."""
    if not os.path.isdir(directory):
        return "missing"
    return incomplete_reason(directory)


def save_warm_start(model, tokenizer, directory: str, run_config=None, trainer_name: str | None = None,
                    trainer=None) -> None:
    """Save into a temporary folder beside `directory`, mark it complete (every file listed with its size, fsynced),
    then rename it to `directory`: a kill at any point leaves either no warm start or a complete one.

    `run_config` (the config of the trainer the warm start is for, named `trainer_name`) is written as its
    run_config.json, so that `implicit-reasoning-eval` evaluates it as that trainer does, on the demo's data.
    With `trainer` (the one that trained `model`) every process calls this: the trainer gathers the weights
    (DeepSpeed ZeRO-3 partitions them) and the main process alone writes."""
    if trainer is not None and not trainer.accelerator.is_main_process:
        trainer.save_model(os.devnull)  # the gather is a collective; only the main process writes
        return
    parent, name = os.path.split(os.path.abspath(directory))
    for stale in os.listdir(parent) if os.path.isdir(parent) else []:
        if stale.startswith(f"{name}.tmp-"):  # a build killed before its rename (the output_dir lock is held)
            shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
    tmp = os.path.join(parent, f"{name}.tmp-{os.getpid()}")
    trainer.save_model(tmp) if trainer is not None else model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    crash_point("warm_start_saved", 0)
    if run_config is not None:
        save_run_config(run_config, trainer_name, tmp, base_model_name_or_path=os.path.abspath(directory),
                        warm_start=f"the demo's SFT warm start ({DEMO_WARM_START['max_steps']} updates on "
                                   "mixed careful/guess solutions), saved for this trainer's format")
    mark_complete(tmp, 0)
    crash_point("warm_start_marked", 0)
    if os.path.exists(directory):  # an incomplete one, being rebuilt
        shutil.rmtree(directory)
    os.replace(tmp, directory)


def build_warm_start(config, directory: str, trainer_cls):
    """Demo tokenizer + model after the warm-start SFT in `trainer_cls`'s prompt format.

    Saved to (and reused from) `directory` (`save_warm_start`: crash-safe); an incomplete one, cut short by
    a kill while it was saved, is rebuilt. The model returned is loaded from there, so its `name_or_path`
    is a directory that holds the base weights (LoRA adapters record it). With several processes they
    train it together, the main process alone writes it, and every process loads it once it is written
    (every process decides to build or reuse before any writes).
    """
    from accelerate import PartialState

    state = PartialState()
    problem = warm_start_problem(directory)
    state.wait_for_everyone()  # every process has looked before any writes
    if problem is None:
        if state.is_main_process:
            print(f"[demo] reusing warm start in {directory}")
    else:
        if problem != "missing" and state.is_main_process:
            print(f"[demo] the warm start in {directory} is incomplete ({problem}): rebuilding it")
        tokenizer = build_demo_tokenizer()
        model = build_demo_model(tokenizer, seed=config.seed)
        rows = warm_start_rows(config, tokenizer, trainer_cls)
        tmp_run = os.path.join(os.path.dirname(os.path.abspath(directory)), "warm_start_run")
        trainer = SFTBaselineTrainer(model, warm_start_config(tmp_run, config), train_dataset=rows,
                                     processing_class=tokenizer)
        trainer.train()
        save_warm_start(model, tokenizer, directory, config, trainer_cls.trainer_name, trainer=trainer)
        if state.is_main_process:
            shutil.rmtree(tmp_run, ignore_errors=True)
        del trainer, model
    state.wait_for_everyone()  # written before anyone loads
    return (
        transformers.AutoModelForCausalLM.from_pretrained(directory),
        transformers.AutoTokenizer.from_pretrained(directory),
    )


def warm_start_rows(config, tokenizer, trainer_cls):
    """SFT rows of the warm start: mixed careful/guess solutions, or for a raw-text mixture its texts
    (prompt -> continuation), in `trainer_cls`'s format."""
    mixture = getattr(config, "mixture", None)
    if mixture and all(is_text_entry(entry) for entry in mixture):
        print(f"[demo] warm start: {DEMO_WARM_START['max_steps']} SFT steps on the mixture's texts")
        texts = trainer_cls.load_split(config, "train", tokenizer)
        return texts.map(lambda r: {"queries": r["prompt"], "rationale": r["continuation"], "responses": ""},
                         remove_columns=texts.column_names)
    keep = ("dataset_config", "dataset_path", "seed", "cot_trigger", "use_chat_template")
    kwargs = {key: value for key, value in config.dataset_kwargs.items() if key in keep}
    train = load_task_dataset(config.dataset_name, "train", tokenizer, **kwargs)  # registry rows, LaTRO format
    print(f"[demo] warm start: {DEMO_WARM_START['max_steps']} SFT steps on mixed careful/guess solutions")
    return trainer_cls.sft_rows(config, warm_start_dataset(train, seed=config.seed), tokenizer)


def demo_threads() -> None:
    """One intra-op thread unless OMP_NUM_THREADS says otherwise.

    The demo model is so small that its ops are dominated by overhead: two threads gain
    little on an idle 2-core machine, and lose up to 6x when another job shares the cores
    (measured: 8m23s vs 1m20s for the whole demo).
    """
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


REPORTED = ("accuracy", "repetition_rate", "loss")  # eval metrics reported before / after, when the trainer has them
CURVES = ("reward", "objective/scores", "loss/value")  # training logs reported at the first and last log


def report(config, name: str, before: dict, after: dict, seconds: float, history=()) -> dict:
    """Print and save (`demo_results.json`) eval metrics before / after and the first / last training logs."""
    result = {
        "trainer": name,
        "dataset": f"{config.dataset_name} ({config.dataset_config})" if not getattr(config, "datasets", None)
        else ", ".join(str(entry.get("config") or entry["name"]) for entry in config.mixture),
        "seed": config.seed,
        "eval_questions": int(after["eval_num_questions"]),
        "total_seconds": round(seconds, 1),
    }
    for key in REPORTED:
        if f"eval_{key}" in after:
            result[f"{key}_before"], result[f"{key}_after"] = before[f"eval_{key}"], after[f"eval_{key}"]
            result[f"eval_{key}_during_training"] = [h[f"eval_{key}"] for h in history  # step 0: the warm start's
                                                     if f"eval_{key}" in h and h.get("step", 0) > 0]
    for key in CURVES:
        values = [h[key] for h in history if key in h]
        if values:
            result[f"{key}_first_log"], result[f"{key}_last_log"] = round(values[0], 4), round(values[-1], 4)
    with open(os.path.join(config.output_dir, DEMO_RESULTS_FILE), "w") as f:
        json.dump(result, f, indent=2)
    for key in REPORTED:
        if f"{key}_before" in result:
            print(f"[demo] {name}: held-out {key} {result[f'{key}_before']:.4g} (warm start) -> "
                  f"{result[f'{key}_after']:.4g} after training, on {result['eval_questions']} rows")
    for key in CURVES:
        if f"{key}_first_log" in result:
            print(f"[demo] {name}: {key} {result[f'{key}_first_log']} at the first log -> {result[f'{key}_last_log']}")
    print(f"[demo] {name}: {result['total_seconds']} s in all, warm start and evaluations included")
    return result


def check_demo_inputs(name: str, config) -> None:
    """Everything `run_training` checks before it writes (data rows, the trainer's settings, `check_train_inputs`),
    on an untrained demo model: a bad input fails here, before the warm start is trained or saved."""
    tokenizer = build_demo_tokenizer()
    trainer = build_trainer(name, config, build_demo_model(tokenizer, seed=config.seed), tokenizer)
    trainer.check_train_inputs()


def run_demo(name: str, config) -> dict:
    """Warm start, evaluate, train with the named trainer, evaluate again; print and save the numbers.

    The inputs are checked first and the output_dir is locked for the whole job (warm start included);
    nothing is written before the checks pass (`run_training`)."""
    from accelerate import PartialState

    demo_threads()
    started = time.time()
    check_demo_inputs(name, config)
    refuse_earlier_run(config.output_dir, is_resuming(config), config.overwrite_output_dir)
    with locked(config.output_dir, PartialState()):
        model, tokenizer = build_warm_start(config, os.path.join(config.output_dir, "warm_start"),
                                            trainer_class(name, config))
        result = run_training(name, config, model, tokenizer, evaluate_before=True)
        return report(config, name, result.before, result.after, time.time() - started, result.log_history)
