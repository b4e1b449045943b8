"""The evaluation job behind `scripts/evaluation.py`: load a checkpoint, generate, score, write files.

A checkpoint is evaluated the way its trainer evaluates during training. The trainer saves
`run_config.json` beside every model it saves (script or Python API): it names the trainer
(`--trainer` overrides), whose `load_split` gives the data and whose `evaluation_records`
generates and checks (LaTRO / SFT: rationale and answer from the prompt; Markovian: a CoT,
then the critic's answer from the redacted context). Every setting of the run (prompt
format, budgets, sampling temperature / top-p / top-k for maj@k) is taken from it unless a
flag here says otherwise; any other field of the trainer's config is a flag too (`--cot_length
32 --instruction "..."`: `trainer_flags`), so a base model without `run_config.json` evaluates
the way a run of that trainer would. Evaluation is greedy unless `--eval_num_samples k` asks for
maj@k. A base model (no `run_config.json`) evaluated as Markovian is its own critic.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, fields

import torch
from transformers import TrainingArguments

from .runtime.models import load_tokenizer, resolve_dtype
from .trainer import trainer_class, trainer_entry
from .trainer.core.state import atomic_write, load_run_config, write_text

# settings of the run that do not carry over to an evaluation (what to load, how it trained, which subset
# it evaluated on during training: an evaluation covers the whole split unless --max_eval_samples says so)
NOT_INHERITED = {
    "model_name_or_path", "tokenizer_name_or_path", "ref_model_name_or_path", "checkpoint_path",
    "num_evaluations", "use_lora", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
    "max_eval_samples", "sanity_check",
}
DATASET_FIELDS = ("dataset_config", "dataset_path")  # the run's, only when evaluating on the run's dataset
# TrainingArguments fields that do carry over: the seed draws generated data sets and subsets, and the batch
# shape is checked against rloo_k
INHERITED_HF = ("seed", "data_seed", "per_device_train_batch_size", "gradient_accumulation_steps")


@dataclass
class EvaluationArguments:
    model_name_or_path: str = field(metadata={"help": "Checkpoint dir, LoRA adapter dir or hub id."})
    trainer: str | None = field(default=None, metadata={"help": "latro | markovian | sft | star | ppo_curriculum "
                                                                 "(default: the run's)."})
    tokenizer_name_or_path: str | None = field(default=None, metadata={"help": "Default: the checkpoint's."})
    base_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Base model of a LoRA adapter (default: the adapter's own record)."}
    )
    dataset_name: str | None = field(default=None, metadata={"help": "Default: the dataset of the training run."})
    dataset_config: str | None = field(default=None, metadata={"help": "Default: the training run's."})
    dataset_path: str | None = field(default=None, metadata={"help": "Local copy with the hub schema."})
    ref_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Markovian: the critic that answers from the CoT (default: the run's base model)."},
    )
    split: str = field(default="test", metadata={"help": "train | eval | test"})
    output_dir: str | None = field(default=None, metadata={"help": "Default: <model_name_or_path>/eval_<split>."})
    eval_temperature: float | None = field(default=None, metadata={"help": "0 = greedy first completion (default: the run's)."})
    eval_num_samples: int = field(default=1, metadata={"help": "k of maj@k: 1 = greedy only (default); maj@k is "
                                                                "opt-in (--eval_num_samples 8)."})
    temperature: float | None = field(default=None, metadata={"help": "maj@k temperature when eval_temperature=0 (default: the run's)."})
    top_p: float | None = field(default=None, metadata={"help": "Default: the run's."})
    top_k: int | None = field(default=None, metadata={"help": "Default: the run's."})
    response_length: int | None = field(default=None, metadata={"help": "Rationale budget (default: the run's)."})
    eval_max_new_tokens: int | None = field(default=None, metadata={"help": "Default: the run's."})
    max_prompt_length: int | None = field(default=None, metadata={"help": "Default: the run's."})
    max_eval_samples: int | None = None
    per_device_eval_batch_size: int = 64
    torch_dtype: str = "auto"
    seed: int | None = field(default=None, metadata={"help": "Default: the run's (it draws generated data sets)."})


def trainer_flags(config_cls, argv: list[str], trainer: str | None = None) -> dict:
    """`--field value` flags of the trainer's config (`config_cls`) as {field: typed value}: only those given."""
    given = [a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")]
    accepted = {f.name for f in fields(config_cls) if f.init}
    for name in given:
        if name not in accepted:
            raise ValueError(f"--{name}: the {trainer or config_cls.__name__} trainer has no such setting")
    if not given:
        return {}
    from transformers import HfArgumentParser

    namespace, rest = HfArgumentParser(config_cls).parse_known_args(argv)
    if rest:
        raise ValueError(f"could not read the flags {rest} for the {trainer or config_cls.__name__} trainer")
    return {name: getattr(namespace, name) for name in given}


def _eval_config(config_cls, run: dict, args: EvaluationArguments, output_dir: str, overrides: dict | None = None):
    """The trainer's config: the run's own settings, then every flag given here, then `overrides` (trainer fields)."""
    ours = {f.name for f in fields(config_cls) if f.init} - {f.name for f in fields(TrainingArguments)}
    values = {k: run[k] for k in (ours - NOT_INHERITED) | set(INHERITED_HF) if k in run}
    if args.dataset_name is not None and args.dataset_name != run.get("dataset_name"):
        for name in DATASET_FIELDS:
            values.pop(name, None)
    accepted = {f.name for f in fields(config_cls) if f.init}
    for item in fields(EvaluationArguments):
        given = getattr(args, item.name)
        if item.name in ("model_name_or_path", "tokenizer_name_or_path", "ref_model_name_or_path", "trainer",
                         "base_model_name_or_path", "split", "output_dir") or given is None:
            continue
        if item.name not in accepted:
            raise ValueError(f"--{item.name}: the {run.get('trainer', config_cls.__name__)} trainer has no such setting")
        values[item.name] = given
    values.update(overrides or {})
    values.update(output_dir=output_dir, report_to=[], use_cpu=not torch.cuda.is_available(),
                  model_name_or_path=args.model_name_or_path)
    return config_cls(**values)


def _critic_path(args: EvaluationArguments, run: dict) -> str:
    """Markovian critic: --ref_model_name_or_path, else the run's reference / base model; a model without a run
    config is a base model: its own critic."""
    path = args.ref_model_name_or_path or run.get("ref_model_name_or_path") or run.get("base_model_name_or_path")
    if not run and not path:
        return args.model_name_or_path
    if path:
        return path
    raise ValueError("--ref_model_name_or_path is required: the run's config names no base model to use as critic")


def load_for_eval(path: str, dtype: str, base_model: str | None = None):
    """A full checkpoint, or base model + LoRA adapter (merged) when the dir holds adapter_config.json."""
    from transformers import AutoModelForCausalLM

    adapter_config = os.path.join(path, "adapter_config.json")
    if os.path.exists(adapter_config):
        from peft import PeftModel

        with open(adapter_config) as f:
            base_model = base_model or json.load(f).get("base_model_name_or_path")
        if not base_model:
            raise ValueError(
                f"{adapter_config} records no base model (base_model_name_or_path is null); "
                "pass --base_model_name_or_path <hub id or directory of the base weights>"
            )
        base = AutoModelForCausalLM.from_pretrained(base_model, dtype=resolve_dtype(dtype))
        model = PeftModel.from_pretrained(base, path).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval()


def run_evaluation(args: EvaluationArguments, overrides: dict | None = None, flags: list[str] = ()) -> dict:
    """Evaluate `args.model_name_or_path`; `overrides` ({field: value}) or `flags` (`--field value` strings) set
    any other field of the trainer's config."""
    run = load_run_config(args.model_name_or_path)
    name = args.trainer or run.get("trainer")
    if name is None:
        raise ValueError(
            f"--trainer is required: {args.model_name_or_path} has no run_config.json naming the trainer "
            "that trained it (latro, markovian, sft)"
        )
    config_cls = trainer_entry(name)[1]
    overrides = {**trainer_flags(config_cls, list(flags), name), **(overrides or {})}
    if args.dataset_name is None and not run.get("dataset_name"):
        raise ValueError("--dataset_name is required: the checkpoint's run config names no dataset")
    torch.manual_seed(args.seed if args.seed is not None else run.get("seed", 0))
    tokenizer = load_tokenizer(args.tokenizer_name_or_path or args.model_name_or_path)
    model = load_for_eval(args.model_name_or_path, args.torch_dtype, args.base_model_name_or_path)
    with tempfile.TemporaryDirectory() as scratch:
        config = _eval_config(config_cls, run, args, scratch, overrides)
        trainer_cls = trainer_class(name, config)
        dataset = trainer_cls.load_split(config, args.split, tokenizer)
        # LaTRO-style evaluation never calls the reference: hand it the model itself (no second copy)
        critic = load_for_eval(_critic_path(args, run), args.torch_dtype) if trainer_cls.eval_uses_reference else model
        trainer = trainer_cls(model, config, eval_dataset=dataset, processing_class=tokenizer, ref_model=critic)
        records = trainer.evaluation_records(model, dataset)
    summary = {**trainer.summarize_records(records), "model": args.model_name_or_path, "trainer": name,
               "dataset": config.dataset_name, "split": args.split}
    out = args.output_dir or os.path.join(args.model_name_or_path, f"eval_{args.split}")
    os.makedirs(out, exist_ok=True)
    # each file whole or not at all: a run that dies here leaves a finished evaluation's pair as it was
    predictions = "".join(json.dumps(record) + "\n" for record in records)
    atomic_write(os.path.join(out, "predictions.jsonl"), lambda tmp: write_text(tmp, predictions))
    atomic_write(os.path.join(out, "summary.json"), lambda tmp: write_text(tmp, json.dumps(summary, indent=2)))
    return summary
