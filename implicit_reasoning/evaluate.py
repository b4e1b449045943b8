"""The evaluation job behind `scripts/evaluation.py`: load a checkpoint, generate, score, write files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch

from .pipeline import RUN_CONFIG_NAME
from .utils.data_utils import load_task_dataset
from .utils.evaluation import evaluate_dataset, summarize_records
from .utils.model_utils import load_tokenizer, resolve_dtype

DEMO_OUTPUT_DIR = "outputs/demo_latro"


@dataclass
class EvaluationArguments:
    model_name_or_path: str = field(default=DEMO_OUTPUT_DIR, metadata={"help": "Checkpoint dir, LoRA adapter dir or hub id."})
    dataset_name: str | None = field(default=None, metadata={"help": "Default: the dataset of the training run."})
    dataset_config: str | None = field(default=None, metadata={"help": "Default: the training run's."})
    dataset_path: str | None = field(default=None, metadata={"help": "Local copy with the hub schema."})
    split: str = field(default="test", metadata={"help": "train | eval | test"})
    output_dir: str | None = field(default=None, metadata={"help": "Default: <model_name_or_path>/eval_<split>."})
    eval_temperature: float = field(default=0.0, metadata={"help": "0 = greedy first completion."})
    eval_num_samples: int = field(default=8, metadata={"help": "k of maj@k (1 = off)."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of maj@k when eval_temperature=0."})
    top_p: float = 1.0
    top_k: int = 0
    response_length: int = field(default=256, metadata={"help": "Rationale budget; default from the training run."})
    eval_max_new_tokens: int | None = None
    max_prompt_length: int = 512
    max_eval_samples: int | None = None
    per_device_eval_batch_size: int = 64
    torch_dtype: str = "auto"
    seed: int = 0


def _apply_run_defaults(args: EvaluationArguments) -> None:
    """Fill dataset and length settings from the training run's run_config.json when not given."""
    path = os.path.join(args.model_name_or_path, RUN_CONFIG_NAME)
    run = json.load(open(path)) if os.path.exists(path) else {}
    for name in ("dataset_name", "dataset_config", "dataset_path"):
        if getattr(args, name) is None:
            setattr(args, name, run.get(name))
    if "response_length" in run and args.response_length == EvaluationArguments.response_length:
        args.response_length = run["response_length"]
    if args.dataset_name is None:
        raise ValueError(f"--dataset_name is required: {path} does not exist to take it from")


def load_for_eval(path: str, dtype: str):
    """A full checkpoint, or base model + LoRA adapter when the dir holds adapter_config.json."""
    if os.path.exists(os.path.join(path, "adapter_config.json")):
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype)).merge_and_unload()
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval()


def run_evaluation(args: EvaluationArguments) -> dict:
    _apply_run_defaults(args)
    torch.manual_seed(args.seed)
    tokenizer = load_tokenizer(args.model_name_or_path)
    model = load_for_eval(args.model_name_or_path, args.torch_dtype)
    dataset = load_task_dataset(
        args.dataset_name, args.split, tokenizer, dataset_config=args.dataset_config, dataset_path=args.dataset_path
    )
    records = evaluate_dataset(model, tokenizer, dataset, args.dataset_name, args, progress=True)
    summary = {**summarize_records(records), "model": args.model_name_or_path, "dataset": args.dataset_name, "split": args.split}
    out = args.output_dir or os.path.join(args.model_name_or_path, f"eval_{args.split}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "predictions.jsonl"), "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary
