"""The evaluation job behind `scripts/evaluation.py`: load a checkpoint, generate, score, write files.

The checkpoint is evaluated the way its trainer evaluates during training: the run's
`run_config.json` names the trainer, whose `load_split` gives the data and whose
`evaluation_records` generates and checks (LaTRO/SFT: rationale and answer from the
prompt; Markovian: a CoT, then the critic's answer from the redacted context).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, fields

import torch

from .pipeline import RUN_CONFIG_NAME
from .trainer import TRAINERS, TrainerConfig
from .utils.evaluation import summarize_records
from .utils.model_utils import load_tokenizer, resolve_dtype

DEMO_OUTPUT_DIR = "outputs/demo_latro"
# taken from the training run unless given on the command line: prompts and budgets as trained
INHERITED = ("max_prompt_length", "response_length", "eval_max_new_tokens", "stop_token", "stop_token_ids",
             "stop_seqs", "cot_trigger", "torch_dtype")


@dataclass
class EvaluationArguments:
    model_name_or_path: str = field(default=DEMO_OUTPUT_DIR, metadata={"help": "Checkpoint dir, LoRA adapter dir or hub id."})
    dataset_name: str | None = field(default=None, metadata={"help": "Default: the dataset of the training run."})
    dataset_config: str | None = field(default=None, metadata={"help": "Default: the training run's."})
    dataset_path: str | None = field(default=None, metadata={"help": "Local copy with the hub schema."})
    ref_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Markovian: the critic that answers from the CoT (default: the run's base model)."},
    )
    split: str = field(default="test", metadata={"help": "train | eval | test"})
    output_dir: str | None = field(default=None, metadata={"help": "Default: <model_name_or_path>/eval_<split>."})
    eval_temperature: float = field(default=0.0, metadata={"help": "0 = greedy first completion."})
    eval_num_samples: int = field(default=8, metadata={"help": "k of maj@k (1 = off)."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of maj@k when eval_temperature=0."})
    top_p: float = 1.0
    top_k: int = 0
    response_length: int = field(default=256, metadata={"help": "Rationale budget (default: the training run's)."})
    eval_max_new_tokens: int | None = None
    max_prompt_length: int = field(default=512, metadata={"help": "Default: the training run's."})
    max_eval_samples: int | None = None
    per_device_eval_batch_size: int = 64
    torch_dtype: str = "auto"
    seed: int = 0


def _run_config(args: EvaluationArguments) -> dict:
    """The training run's saved config (empty for a checkpoint trained elsewhere); fills unset dataset args."""
    path = os.path.join(args.model_name_or_path, RUN_CONFIG_NAME)
    run = json.load(open(path)) if os.path.exists(path) else {}
    for name in ("dataset_name", "dataset_config", "dataset_path"):
        if getattr(args, name) is None:
            setattr(args, name, run.get(name))
    if args.dataset_name is None:
        raise ValueError(f"--dataset_name is required: {path} does not exist to take it from")
    return run


def _eval_config(config_cls, run: dict, args: EvaluationArguments, output_dir: str):
    """The trainer's config: its method fields from the run, the evaluation fields from `args`."""
    method_fields = {f.name for f in fields(config_cls) if f.init} - {f.name for f in fields(TrainerConfig)}
    shared = {f.name for f in fields(EvaluationArguments)} & {f.name for f in fields(TrainerConfig) if f.init}
    values = {k: run[k] for k in method_fields | set(INHERITED) if k in run}
    for name in shared - {"model_name_or_path", "ref_model_name_or_path"}:
        given = getattr(args, name)
        if name not in values or given != EvaluationArguments.__dataclass_fields__[name].default:
            values[name] = given  # an explicit flag wins over the run's setting
    values.update(output_dir=output_dir, report_to=[], use_cpu=not torch.cuda.is_available())
    return config_cls(**values)


def _critic_path(args: EvaluationArguments, run: dict) -> str:
    """Markovian critic: --ref_model_name_or_path, else the run's reference/base model, else the demo warm start."""
    demo_warm_start = os.path.join(args.model_name_or_path, "warm_start")
    for path in (args.ref_model_name_or_path, run.get("ref_model_name_or_path"), run.get("model_name_or_path")):
        if path:
            return path
    if os.path.isdir(demo_warm_start):
        return demo_warm_start
    raise ValueError("--ref_model_name_or_path is required: the run's config names no base model to use as critic")


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
    run = _run_config(args)
    name = run.get("trainer", "latro")
    trainer_cls, config_cls = TRAINERS["latro" if name == "sft" else name]
    torch.manual_seed(args.seed)
    tokenizer = load_tokenizer(args.model_name_or_path)
    model = load_for_eval(args.model_name_or_path, args.torch_dtype)
    with tempfile.TemporaryDirectory() as scratch:
        config = _eval_config(config_cls, run, args, scratch)
        dataset = trainer_cls.load_split(config, args.split, tokenizer)
        # LaTRO-style evaluation never calls the reference: hand it the model itself (no second copy)
        critic = load_for_eval(_critic_path(args, run), args.torch_dtype) if trainer_cls.eval_uses_reference else model
        trainer = trainer_cls(model, config, eval_dataset=dataset, processing_class=tokenizer, ref_model=critic)
        records = trainer.evaluation_records(model, dataset)
    summary = {**summarize_records(records), "model": args.model_name_or_path, "trainer": name,
               "dataset": args.dataset_name, "split": args.split}
    out = args.output_dir or os.path.join(args.model_name_or_path, f"eval_{args.split}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "predictions.jsonl"), "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary
