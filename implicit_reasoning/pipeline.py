"""End-to-end jobs behind the scripts: parse a config, build a trainer, train, evaluate.

`scripts/training.py` is a thin wrapper over `parse_training_args` + `run_training` /
`run_demo`, so the same code paths are unit-tested.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import yaml
from transformers import HfArgumentParser

from .trainer import TRAINERS

RUN_CONFIG_NAME = "run_config.json"


def _trainer_entry(name: str):
    if name not in TRAINERS:
        raise ValueError(f"--trainer {name!r}: unknown; available: {sorted(TRAINERS)}")
    return TRAINERS[name]


def is_accelerate_config(path: str) -> bool:
    """An accelerate launch config (as opposed to a training-hyperparameter YAML)."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    return isinstance(data, dict) and ("distributed_type" in data or "compute_environment" in data)


def parse_training_args(argv: list[str]) -> tuple[str, object]:
    """(trainer name, config) from CLI flags, or from a YAML file given as the only argument.

    A YAML may carry `trainer: latro`; `--trainer` on the command line wins.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--trainer", default=None)
    known, rest = pre.parse_known_args(argv)
    if len(rest) == 1 and rest[0].endswith((".yaml", ".yml")):
        with open(rest[0]) as f:
            values = yaml.safe_load(f) or {}
        name = known.trainer or values.pop("trainer", "latro")
        values.pop("trainer", None)
        config_cls = _trainer_entry(name)[1]
        (config,) = HfArgumentParser(config_cls).parse_dict(values)
        return name, config
    name = known.trainer or "latro"
    config_cls = _trainer_entry(name)[1]
    (config,) = HfArgumentParser(config_cls).parse_args_into_dataclasses(args=rest)
    return name, config


def relaunch_command(argv: list[str], script: str) -> list[str] | None:
    """If `--config_file X` names an accelerate config, the `accelerate launch` command to run instead.

    Supports `accelerate launch scripts/training.py --config_file configs/8gpu.yaml ...`,
    where accelerate hands the flag to the script: a single-process run re-executes itself
    under `accelerate launch --config_file X`. A training YAML passed with --config_file is
    simply the config (returned as None with argv rewritten by `split_config_file`).
    """
    if "--config_file" not in argv:
        return None
    i = argv.index("--config_file")
    path = argv[i + 1]
    if not is_accelerate_config(path):
        return None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit(
            f"--config_file {path} is an accelerate config but this run is already distributed: "
            f"put it before the script: accelerate launch --config_file {path} {script} ..."
        )
    rest = argv[:i] + argv[i + 2 :]
    return ["accelerate", "launch", "--config_file", path, script, *rest]


def split_config_file(argv: list[str]) -> list[str]:
    """`--config_file train.yaml rest...` -> `train.yaml` when it is the only other argument."""
    if "--config_file" in argv:
        i = argv.index("--config_file")
        rest = argv[:i] + argv[i + 2 :]
        return [argv[i + 1], *rest]
    return argv


def load_datasets(config, tokenizer, trainer_cls):
    """Train and eval splits of `config.dataset_name`, in the columns `trainer_cls` reads."""
    train = trainer_cls.load_split(config, "train", tokenizer)
    try:
        evaluation = trainer_cls.load_split(config, "eval", tokenizer)
    except (ValueError, FileNotFoundError) as error:  # a custom file may have no eval split
        print(f"[implicit_reasoning] no eval split for {config.dataset_name}: {error}", file=sys.stderr)
        evaluation = None
    return train, evaluation


def save_run_config(config, name: str) -> None:
    """The run's config as JSON (HF masks token fields) next to the model, for evaluation defaults."""
    os.makedirs(config.output_dir, exist_ok=True)
    data = json.loads(config.to_json_string())
    if hasattr(config, "stop_token"):  # HF masks every *_token field as a secret; this one is eos/pad/both
        data["stop_token"] = config.stop_token
    data["trainer"] = name
    with open(os.path.join(config.output_dir, RUN_CONFIG_NAME), "w") as f:
        json.dump(data, f, indent=2)


def run_training(name: str, config, model=None, tokenizer=None) -> dict:
    """Train with the named trainer on a hub/local model, save it, and return final eval metrics."""
    trainer_cls = _trainer_entry(name)[0]
    from .utils.model_utils import load_causal_lm, load_tokenizer

    model = model if model is not None else load_causal_lm(config.model_name_or_path, config)
    tokenizer = tokenizer or load_tokenizer(config.model_name_or_path, config.trust_remote_code)
    train, evaluation = load_datasets(config, tokenizer, trainer_cls)
    trainer = trainer_cls(model, config, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer)
    if trainer.accelerator.is_main_process:
        save_run_config(config, name)
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    return trainer.evaluate() if evaluation is not None else {}


def run_sft_baseline(config, model=None, tokenizer=None) -> dict:
    """SFT on the dataset's gold rationales, then the same generation eval as the RL trainers."""
    from .sft import sft_trainer
    from .trainer import BaseTrainer
    from .utils.evaluation import evaluate_dataset, summarize_records
    from .utils.model_utils import load_causal_lm, load_tokenizer

    model = model if model is not None else load_causal_lm(config.model_name_or_path, config)
    tokenizer = tokenizer or load_tokenizer(config.model_name_or_path, config.trust_remote_code)
    train, evaluation = load_datasets(config, tokenizer, BaseTrainer)
    trainer = sft_trainer(model, tokenizer, train, config, config.max_prompt_length)
    if trainer.accelerator.is_main_process:
        save_run_config(config, "sft")
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    if evaluation is None:
        return {}
    records = evaluate_dataset(model, tokenizer, evaluation, config.dataset_name, config)
    return {f"eval_{k}": v for k, v in summarize_records(records).items()}
