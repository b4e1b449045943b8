"""The one job runner behind the scripts: parse a config, build a trainer, train, evaluate.

`scripts/training.py` is a thin wrapper over `parse_training_args` + `run_training` (and the
demo's `run_demo`, which calls `run_training` too), so the same code paths are unit-tested.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field, fields

import yaml

from .config_files import deepspeed_file_flag, resolve_config, shipped_config
from .trainer import TRAINER_SPECS, config_class, trainer_class, trainer_summary
from .trainer.core.output_dir import locked, refuse_earlier_run

DEFAULT_TRAINER = "latro"


def is_accelerate_config(path: str) -> bool:
    """An accelerate launch config (as opposed to a training-hyperparameter YAML)."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    return isinstance(data, dict) and ("distributed_type" in data or "compute_environment" in data)


def trainers_help(prog: str | None = None) -> str:
    """The `--help` text without `--trainer`: the trainers and how to list one's fields."""
    prog = prog or os.path.basename(sys.argv[0]) or "training.py"
    lines = [f"usage: {prog} [--trainer NAME] [--FIELD VALUE ...] | {prog} CONFIG [--FIELD VALUE ...]", "",
             "CONFIG: a training YAML's path, or a shipped one's name (demo_latro, latro_gsm8k, ...).", "", "trainers:"]
    for name, (_, trainer_name, _, config_name) in sorted(TRAINER_SPECS.items()):  # nothing imported: fast
        lines.append(f"  {name:<15} {trainer_name} / {config_name}: {trainer_summary(name)}")
    lines += ["", f"--trainer defaults to {DEFAULT_TRAINER!r}. `--help --trainer NAME` lists that trainer's fields."]
    return "\n".join(lines)


def check_config_keys(values: dict, config_cls, source: str) -> None:
    """Every key must be a field of `config_cls`; an unknown one is an error naming it and its closest field."""
    import difflib
    from dataclasses import fields

    known = [f.name for f in fields(config_cls) if f.init]
    for key in values:
        if key not in known:
            owners = [name for name in sorted(TRAINER_SPECS)
                      if key in {f.name for f in fields(config_class(name)) if f.init}]
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            if owners:  # another trainer's field (cot_length in a LaTRO YAML): say whose
                hint = f"; it is a field of trainer {' / '.join(owners)} (set `trainer:` to use it){hint}"
            raise ValueError(f"{source}: unknown key {key!r} for {config_cls.__name__}{hint}")


def parse_training_args(argv: list[str]) -> tuple[str, object]:
    """(trainer name, config) from CLI flags, or from a YAML file (first argument) plus flags that override it.

    The YAML is a path or a shipped config's name (`demo_latro`). It may carry `trainer: latro`;
    `--trainer` on the command line wins. `--help` without a trainer (flag or YAML key) prints the
    trainers and exits; with one, that trainer's fields, defaults being the YAML's values.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--trainer", default=None)
    known, rest = pre.parse_known_args(argv)
    values: dict = {}
    if rest and not rest[0].startswith("-"):  # a leading positional is a config (the parser has no positionals)
        source = resolve_config(rest[0])
        with open(source) as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{source}: a training YAML is a mapping of field: value, not a {type(values).__name__} "
                             f"({str(values)[:60]!r})")
        values.pop("trainer", None) if known.trainer else None
        known.trainer = known.trainer or values.pop("trainer", None)
        rest = rest[1:]
    if known.trainer is None and ("-h" in rest or "--help" in rest):
        print(trainers_help())
        raise SystemExit(0)
    values, rest = resolve_deepspeed(values, rest)
    name = known.trainer or DEFAULT_TRAINER
    config_cls = config_class(name)  # the config's module only: `--help` does not load the trainers
    check_config_keys(values, config_cls, source if values else "config")
    parser = training_parser(config_cls)
    parser.set_defaults(**values)  # the YAML's values; flags given after it override them
    (config,) = parser.parse_args_into_dataclasses(args=rest)
    secrets_to_environment(config)
    return name, config


def training_parser(config_cls):
    """HfArgumentParser of `config_cls`; `--report_to` takes several names (`--report_to tensorboard wandb`, as in
    transformers 4), and the config splits `tensorboard,wandb`. Its help shows the trainer's own fields first, in
    the sections its config docstrings name, then transformers' TrainingArguments."""
    from transformers import HfArgumentParser, TrainingArguments

    from .trainer.core.config_sections import config_sections

    parser = HfArgumentParser(config_cls)
    parser.usage = "%(prog)s [CONFIG] [--trainer NAME] [--FIELD VALUE ...]"
    for action in parser._actions:
        if action.dest == "report_to":
            action.nargs = "+"
    hf_fields = [f.name for f in fields(TrainingArguments) if f.init]
    sections = config_sections(config_cls)
    listed = {name for _, names in sections for name in names}
    own = [f.name for f in fields(config_cls) if f.init and f.name not in listed and f.name not in hf_fields]
    groups = [*sections, (f"Other fields of {config_cls.__name__}", own),
              ("transformers.TrainingArguments fields", [n for n in hf_fields if n not in listed])]
    options = parser._optionals._group_actions
    for title, names in groups:
        group = parser.add_argument_group(title)
        for name in names:
            moved = [action for action in options if action.dest == name]  # a bool may have --no_NAME too
            group._group_actions.extend(moved)
            options[:] = [action for action in options if action.dest != name]
    return parser


def resolve_deepspeed(values: dict, rest: list[str]) -> tuple[dict, list[str]]:
    """A `deepspeed` value (YAML key or `--deepspeed` flag) naming a shipped DeepSpeed JSON by name -> its path.

    Anything else (an existing path, a JSON string) is left as it is for TrainingArguments."""

    def resolved(value):
        found = shipped_config(value) if isinstance(value, str) and not os.path.exists(value) else None
        return str(found) if found is not None else value

    values = {**values, "deepspeed": resolved(values["deepspeed"])} if "deepspeed" in values else values
    rest = list(rest)
    if "--deepspeed" in rest[:-1]:
        i = rest.index("--deepspeed")
        rest[i + 1] = resolved(rest[i + 1])
    return values, rest


def relaunch_command(argv: list[str], script: str) -> list[str] | None:
    """If `--config_file X` names an accelerate config, the `accelerate launch` command to run instead.

    Supports `accelerate launch scripts/training.py --config_file configs/8gpu.yaml ...`,
    where accelerate hands the flag to the script: a single-process run re-executes itself
    under `accelerate launch --config_file X`, with this interpreter's accelerate. X is a path
    or a shipped config's name (`--config_file 8gpu`); a shipped config's relative DeepSpeed
    JSON is passed as `--deepspeed_config_file` when it does not exist from here. A training
    YAML passed with --config_file is simply the config (returned as None with argv rewritten
    by `split_config_file`).
    """
    if "--config_file" not in argv:
        return None
    i = argv.index("--config_file")
    path = resolve_config(argv[i + 1], "--config_file")
    if not is_accelerate_config(path):
        return None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit(
            f"--config_file {path} is an accelerate config but this run is already distributed: "
            f"put it before the script: accelerate launch --config_file {path} {script} ..."
        )
    rest = argv[:i] + argv[i + 2 :]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", path]
    return [*launch, *deepspeed_file_flag(path), script, *rest]


def split_config_file(argv: list[str]) -> list[str]:
    """`--config_file train.yaml rest...` -> `train.yaml` when it is the only other argument."""
    if "--config_file" in argv:
        i = argv.index("--config_file")
        rest = argv[:i] + argv[i + 2 :]
        return [argv[i + 1], *rest]
    return argv


SECRET_FLAGS = {"--hub_token": "HF_TOKEN"}  # flag -> the environment variable the hub libraries read instead


def _secret_flag(flag: str) -> str | None:
    """The secret flag that `flag` spells for argparse, None if none: the exact flag, its dash spelling
    (`--hub-token`, which HfArgumentParser accepts too) or an abbreviation of either (`--hub_tok`) that
    argparse would expand to it (at least `--hub_t`: shorter prefixes are ambiguous with other fields)."""
    if not flag.startswith("--"):
        return None
    spelled = "--" + flag[2:].replace("-", "_")
    for secret in SECRET_FLAGS:
        if len(spelled) >= len("--hub_t") and secret.startswith(spelled):
            return secret
    return None


def hide_secret_flags(argv: list[str]) -> list[str]:
    """`argv` without `--hub_token VALUE` / `--hub_token=VALUE`; the value goes to HF_TOKEN instead.

    Trainer pickles its arguments into every checkpoint (`training_args.bin`) and wandb records
    the command line, so a token must be neither a field value nor a visible argument. The
    hub libraries (and `push_to_hub`, with `hub_token` unset) read HF_TOKEN from the environment,
    and a re-launched process inherits it.
    """
    kept, i = [], 0
    while i < len(argv):
        flag, equals, inline = argv[i].partition("=")
        secret = _secret_flag(flag)
        if secret and (equals or i + 1 < len(argv)):
            os.environ[SECRET_FLAGS[secret]] = inline if equals else argv[i + 1]
            i += 1 if equals else 2
            continue
        kept.append(argv[i])
        i += 1
    return kept


def secrets_to_environment(config) -> None:
    """A `hub_token` set in a training YAML: moved to HF_TOKEN, the field cleared (see `hide_secret_flags`)."""
    if getattr(config, "hub_token", None):
        os.environ["HF_TOKEN"] = config.hub_token
        config.hub_token = None


def load_datasets(config, tokenizer, trainer_cls):
    """Train and eval splits of `config.dataset_name`, in the columns `trainer_cls` reads."""
    train = trainer_cls.load_split(config, "train", tokenizer)
    try:
        evaluation = trainer_cls.load_split(config, "eval", tokenizer)
    except (ValueError, FileNotFoundError) as error:  # a custom file may have no eval split
        print(f"[implicit_reasoning] no eval split for {config.dataset_name}: {error}", file=sys.stderr)
        evaluation = None
    return train, evaluation


@dataclass
class RunResult:
    """What a training job returns: eval metrics before (if asked) and after, and the log history."""

    after: dict
    before: dict | None = None
    log_history: list = field(default_factory=list)


def build_trainer(name: str, config, model=None, tokenizer=None):
    """The trainer for `config` (`--trainer name`) with its train / eval splits; model and tokenizer
    are loaded from `model_name_or_path` / `tokenizer_name_or_path` unless given."""
    from .runtime.models import load_causal_lm, load_tokenizer

    cls = trainer_class(name, config)
    model = model if model is not None else load_causal_lm(config.model_name_or_path, config)
    if tokenizer is None:
        tokenizer = load_tokenizer(config.tokenizer_name_or_path or config.model_name_or_path, config.trust_remote_code)
    train, evaluation = load_datasets(config, tokenizer, cls)
    return cls(model, config, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer)


def end_distributed() -> None:
    """Wait for every process, free what still holds the process group, then destroy it.

    Call it once the job's collectives are over. The gloo group must die here, while the interpreter
    is whole: one still alive at interpreter exit is torn down during finalization, where a gloo worker
    thread that needs the GIL is killed and the process aborts after training succeeded (SIGABRT,
    "terminate called without an active exception"). What held it: a finished trainer's DDP wrapper
    (kept by reference cycles until a garbage collection, hence the `gc.collect()`), and default
    arguments that bound the group at import (`runtime/launch.py` imports those modules first).
    """
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        gc.collect()  # a trainer in a reference cycle still holds the group through its DDP wrapper
        dist.destroy_process_group()


def is_resuming(config) -> bool:
    """Whether the run continues a checkpoint (`resume_from_checkpoint` a path or True, "true" from the CLI)."""
    value = config.resume_from_checkpoint
    return bool(value) and str(value).lower() not in ("false", "none", "")


def run_training(name: str, config, model=None, tokenizer=None, evaluate_before: bool = False) -> RunResult:
    """Train with the named trainer, save the model (and its run_config.json) and trainer state, evaluate.

    Nothing is written into `output_dir` before the inputs are checked (data, settings, the trainer's own
    `check_train_inputs`); a fresh run in a directory holding an earlier run is refused unless it resumes
    or `overwrite_output_dir` is set; the directory is locked for the whole job (`trainer/core/output_dir.py`).
    """
    trainer = build_trainer(name, config, model, tokenizer)
    trainer.check_train_inputs()
    refuse_earlier_run(config.output_dir, is_resuming(config), config.overwrite_output_dir)
    with locked(config.output_dir, trainer.accelerator):
        has_eval = trainer.eval_dataset is not None
        before = trainer.evaluate() if evaluate_before and has_eval else None
        trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
        trainer.save_model(config.output_dir)
        after = trainer.evaluate() if has_eval else {}
        if trainer.args.should_save:
            trainer.save_state()  # trainer_state.json: the whole log history, the last evaluation included
    return RunResult(after=after, before=before, log_history=list(trainer.state.log_history))
