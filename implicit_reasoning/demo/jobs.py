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
import time

import torch
import transformers

from ..pipeline import run_training
from ..trainer import SFTBaselineConfig, SFTBaselineTrainer, trainer_class
from ..utils.data_utils import load_task_dataset
from .assets import build_demo_model, build_demo_tokenizer

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
    """The warm start's SFT settings (DEMO_WARM_START, cosine schedule, no saves)."""
    return SFTBaselineConfig(
        output_dir=directory, lr_scheduler_type="cosine", weight_decay=0.0, logging_steps=100, save_strategy="no",
        report_to="none", seed=config.seed, disable_tqdm=True, max_prompt_length=config.max_prompt_length,
        use_cpu=not torch.cuda.is_available(), **DEMO_WARM_START,
    )


def build_warm_start(config, directory: str, trainer_cls):
    """Demo tokenizer + model after the warm-start SFT in `trainer_cls`'s prompt format.

    Saved to (and reused from) `directory`; the model returned is loaded from there, so its
    `name_or_path` is a directory that holds the base weights (LoRA adapters record it).
    """
    if not os.path.exists(os.path.join(directory, "config.json")):
        tokenizer = build_demo_tokenizer()
        model = build_demo_model(tokenizer, seed=config.seed)
        keep = ("dataset_config", "dataset_path", "seed", "cot_trigger", "use_chat_template")
        kwargs = {key: value for key, value in config.dataset_kwargs.items() if key in keep}
        train = load_task_dataset(config.dataset_name, "train", tokenizer, **kwargs)  # registry rows, LaTRO format
        print(f"[demo] warm start: {DEMO_WARM_START['max_steps']} SFT steps on mixed careful/guess solutions")
        rows = trainer_cls.sft_rows(config, warm_start_dataset(train, seed=config.seed), tokenizer)
        SFTBaselineTrainer(model, warm_start_config(directory, config), train_dataset=rows,
                           processing_class=tokenizer).train()
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
    else:
        print(f"[demo] reusing warm start in {directory}")
    return (
        transformers.AutoModelForCausalLM.from_pretrained(directory),
        transformers.AutoTokenizer.from_pretrained(directory),
    )


def demo_threads() -> None:
    """One intra-op thread unless OMP_NUM_THREADS says otherwise.

    The demo model is so small that its ops are dominated by overhead: two threads gain
    little on an idle 2-core machine, and lose up to 6x when another job shares the cores
    (measured: 8m23s vs 1m20s for the whole demo).
    """
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


def report(config, name: str, before: dict, after: dict, seconds: float, history=()) -> dict:
    """Print and save (`demo_results.json`) accuracy before / after and the first / last logged reward."""
    rewards = [h["reward"] for h in history if "reward" in h]
    evals = [h["eval_accuracy"] for h in history if "eval_accuracy" in h]
    result = {
        "trainer": name,
        "dataset": f"{config.dataset_name} ({config.dataset_config})",
        "seed": config.seed,
        "accuracy_before": before["eval_accuracy"],
        "accuracy_after": after["eval_accuracy"],
        "eval_accuracy_during_training": evals,
        "eval_questions": int(after["eval_num_questions"]),
        "total_seconds": round(seconds, 1),
    }
    if rewards:
        result.update(reward_first_log=round(rewards[0], 3), reward_last_log=round(rewards[-1], 3))
    with open(os.path.join(config.output_dir, DEMO_RESULTS_FILE), "w") as f:
        json.dump(result, f, indent=2)
    print(
        f"[demo] {name}: held-out accuracy {result['accuracy_before']:.1%} (warm start) -> "
        f"{result['accuracy_after']:.1%} after training, on {result['eval_questions']} questions "
        f"({result['total_seconds']} s in all, warm start and evaluations included)"
    )
    if rewards:
        print(f"[demo] {name}: mean reward {rewards[0]:.3f} at the first log -> {rewards[-1]:.3f} at the last")
    return result


def run_demo(name: str, config) -> dict:
    """Warm start, evaluate, train with the named trainer, evaluate again; print and save the numbers."""
    demo_threads()
    started = time.time()
    model, tokenizer = build_warm_start(config, os.path.join(config.output_dir, "warm_start"),
                                        trainer_class(name, config))
    result = run_training(name, config, model, tokenizer, evaluate_before=True)
    return report(config, name, result.before, result.after, time.time() - started, result.log_history)
