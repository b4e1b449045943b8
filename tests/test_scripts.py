"""The user-facing entry points: argument parsing, accelerate re-launch, torchrun, evaluation, the demo."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import HfArgumentParser

from conftest import RANK_RESULT, rank_results, torchrun_command
from implicit_reasoning.pipeline import parse_training_args, relaunch_command, split_config_file
from implicit_reasoning.trainer import TRAINERS, LatroConfig

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


def test_yaml_as_sole_argument_and_flags_override_trainer(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"trainer": "latro", "output_dir": str(tmp_path), "rloo_k": 4, "stop_seqs": ["X"]}))
    name, config = parse_training_args([str(path)])
    assert name == "latro" and isinstance(config, LatroConfig)
    assert (config.rloo_k, config.stop_seqs, config.per_device_train_batch_size) == (4, ["X"], 16)
    name, config = parse_training_args(["--trainer", "latro", "--output_dir", "o", "--rloo_k", "8", "--kl_coef", "0.1"])
    assert (config.rloo_k, config.kl_coef) == (8, 0.1)
    with pytest.raises(ValueError, match="--trainer 'nope': unknown"):
        parse_training_args(["--trainer", "nope"])


def test_every_shipped_training_yaml_parses():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if "distributed_type" in data or "compute_environment" in data:
            continue  # accelerate configs: tested in test_configs.py
        name = data.pop("trainer", "latro")
        config_cls = TRAINERS[name][1]
        data.update(bf16=False, use_cpu=True)  # the GPU recipes ask for bf16, which this CPU cannot do
        (config,) = HfArgumentParser(config_cls).parse_dict(data)  # unknown keys would raise
        assert config.output_dir, path


def test_yaml_then_flags_and_unknown_keys(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"trainer": "markovian", "output_dir": str(tmp_path), "cot_length": 7}))
    name, config = parse_training_args([str(path), "--cot_length", "9", "--rloo_k", "2"])
    assert name == "markovian" and (config.cot_length, config.rloo_k) == (9, 2)
    path.write_text(yaml.safe_dump({"trainer": "markovian", "output_dir": str(tmp_path), "cot_lenght": 7}))
    with pytest.raises(ValueError, match="unknown key 'cot_lenght'.*did you mean 'cot_length'"):
        parse_training_args([str(path)])
    path.write_text(yaml.safe_dump({"trainer": "markovian", "output_dir": str(tmp_path), "kl_coef": 0.1}))
    with pytest.raises(ValueError, match="unknown key 'kl_coef' for MarkovianConfig"):  # Markovian's KL is kl_penalty
        parse_training_args([str(path)])


def test_help_lists_the_trainers_and_each_trainers_fields():
    script = str(ROOT / "scripts/training.py")
    listing = subprocess.run([sys.executable, script, "--help"], env=ENV, capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr[-2000:]
    for name, (trainer_cls, config_cls) in TRAINERS.items():
        assert f"{name} " in listing.stdout and trainer_cls.__name__ in listing.stdout
    fields = subprocess.run([sys.executable, script, "--help", "--trainer", "markovian"], env=ENV,
                            capture_output=True, text=True, timeout=120)
    assert fields.returncode == 0 and "--cot_length" in fields.stdout and "--kl_penalty" in fields.stdout
    assert "--stop_seqs" not in fields.stdout  # a LaTRO field: not in the Markovian config


def test_accelerate_config_after_the_script_relaunches(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the config's DeepSpeed JSON (configs/ds_zero3.json) exists from here: no extra flag
    argv = ["--config_file", str(ROOT / "configs/8gpu.yaml"), "--trainer", "latro"]
    command = relaunch_command(argv, "scripts/training.py")
    assert command == [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                       str(ROOT / "configs/8gpu.yaml"), "scripts/training.py", "--trainer", "latro"]
    training_yaml = tmp_path / "t.yaml"
    training_yaml.write_text("rloo_k: 4\noutput_dir: o\n")
    argv = ["--config_file", str(training_yaml)]
    assert relaunch_command(argv, "scripts/training.py") is None
    assert split_config_file(argv) == [str(training_yaml)]


ROLLOUT = ["--rloo_k", "2", "--max_steps", "2"]
METHOD_FLAGS = {
    "latro": [*ROLLOUT, "--response_length", "8"],
    "markovian": [*ROLLOUT, "--cot_length", "6", "--method", "ppo", "--ppo_epochs", "1", "--max_prompt_length", "48"],
    # VQ's loss leaves the layers above vq_hidden_layer unused: DDP must look for unused parameters even
    # with gradient checkpointing on (which turns the search off by default)
    "markovian-vq": [*ROLLOUT, "--use_vq", "true", "--vq_reason_length", "4", "--vq_hidden_layer", "1",
                     "--gradient_checkpointing", "true", "--max_prompt_length", "48"],
    # one STaR iteration of 2 steps: each process generates for half of the questions, all see every kept one
    "star": ["--num_iterations", "1", "--start_steps", "2", "--samples_per_train_question", "2",
             "--response_length", "8", "--gen_batch_size", "16"],
    "star-dpo": ["--num_iterations", "1", "--start_steps", "2", "--samples_per_train_question", "2",
                 "--response_length", "8", "--gen_batch_size", "16", "--train_strategy", "dpo", "--temperature", "2"],
    # one rollout of 2 epochs x 1 minibatch: 2 updates; YAML-free CLI lists for the reward functions
    "ppo_curriculum": ["--max_steps", "2", "--ppo_epochs", "2", "--response_length", "8",
                       "--reward_funcs", "answer_accuracy", "repetition_penalty", "--adaptive_kl", "true"],
}


@pytest.mark.parametrize("variant", ["latro", "markovian", "markovian-vq", "star", "star-dpo", "ppo_curriculum"])
def test_torchrun_two_processes_data_parallel(tmp_path, tiny_model_dir, variant):
    name = variant.split("-")[0]
    out = tmp_path / "run"
    command = torchrun_command(
        ROOT / "scripts/training.py", "--trainer", name,
        "--model_name_or_path", str(tiny_model_dir), "--dataset_name", "arithmetic",
        "--dataset_config", "num_terms=2,max_value=5,num_examples=32", "--output_dir", str(out),
        "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2",
        "--learning_rate", "1e-3", "--logging_steps", "1",
        # no --use_cpu / --ddp_backend: on a machine without GPUs the processes find each other over gloo by themselves
        "--per_device_eval_batch_size", "16", "--save_strategy", "no", "--report_to", "none",
        "--disable_tqdm", "true", *METHOD_FLAGS[variant],
    )
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model.safetensors").exists()
    assert json.loads((out / "run_config.json").read_text())["trainer"] == name
    assert "'eval_accuracy'" in result.stdout
    if name == "star":  # the iteration's generations: every question of both processes, in one file
        rows = [json.loads(line) for line in (out / "iteration_0" / "generated.jsonl").read_text().splitlines()]
        assert sorted({r["question_index"] for r in rows if not r["hinted"]}) == list(range(32))
    else:  # 2 updates x (2 processes x 2 prompts) = 8 of 32 prompts per update -> epoch 0.5 (one process: 0.25)
        assert "'epoch': 0.5" in result.stdout


def test_sft_baseline_script_trains_and_evaluates(tmp_path, tiny_model_dir):
    out = tmp_path / "sft"
    command = [
        sys.executable, str(ROOT / "scripts/sft_baseline.py"), "--model_name_or_path", str(tiny_model_dir),
        "--dataset_name", "arithmetic", "--dataset_config", "num_terms=2,max_value=5,num_examples=16",
        "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--learning_rate", "1e-3", "--response_length", "8", "--report_to", "none", "--save_strategy", "no",
        "--use_cpu", "--disable_tqdm", "true",
    ]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'eval_accuracy'" in result.stdout and "'eval_num_questions': 16" in result.stdout
    assert (out / "model.safetensors").exists()
    assert json.loads((out / "run_config.json").read_text())["trainer"] == "sft"


def test_evaluation_script_writes_summary_and_predictions(tmp_path, tiny_model_dir):
    out = tmp_path / "eval"
    command = [
        sys.executable, str(ROOT / "scripts/evaluation.py"), "--model_name_or_path", str(tiny_model_dir),
        "--dataset_name", "arithmetic", "--dataset_config", "num_terms=2,max_value=5,num_examples=12",
        "--split", "test", "--eval_num_samples", "3", "--response_length", "8", "--output_dir", str(out),
        "--trainer", "latro",  # a checkpoint trained elsewhere has no run_config.json naming its trainer
    ]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_questions"] == 12 and "accuracy" in summary and "maj@3" in summary
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and len(rows[0]["samples"]) == 3
    assert summary["accuracy"] == sum(r["correct"] for r in rows) / 12


@pytest.mark.parametrize("demo", ["latro", "markovian", "star", "star_dpo", "ppo_curriculum"])
def test_builtin_demo_raises_accuracy(demo_results, demo):
    """The README's main job and the other demos, as shipped (configs/demo_<demo>.yaml), on a fresh output dir
    (run in the background from the start of the session: conftest.demo_results)."""
    result = demo_results[demo]
    assert isinstance(result, dict), result
    assert result["eval_questions"] >= 200
    # PPO, re-measured over 3 seeds after the chunked LM head: +20 points on average, but this seed (0) gains
    # 9 (59.5 % -> 68.5 %, benchmarks/demo_seeds/ppo): its bound is 5 points; every other demo must gain 10
    gain = 0.05 if demo == "ppo_curriculum" else 0.10
    assert result["accuracy_after"] >= result["accuracy_before"] + gain, result
    if demo == "markovian":  # the normalized reward R = log P(y | CoT) - log P(y | CoT') rises too
        assert result["reward_last_log"] > result["reward_first_log"], result
    if demo == "ppo_curriculum":  # the accuracy reward rises and the value network learns the returns
        assert result["objective/scores_last_log"] > result["objective/scores_first_log"], result
        assert result["loss/value_last_log"] < result["loss/value_first_log"] / 2, result
    if demo == "star":  # two iterations, each validated, the second no worse than the first
        curve = result["eval_accuracy_during_training"]
        assert len(curve) >= 2 and curve[1] >= curve[0] - 0.02, result


@pytest.mark.demo("ppo_text")
def test_builtin_text_demo_lowers_repetition_and_learns_values(demo_results):
    """PPO with the repetition penalty on the built-in raw-text mixture (configs/demo_ppo_text.yaml, as shipped)."""
    result = demo_results["ppo_text"]
    assert isinstance(result, dict), result
    assert result["eval_questions"] == 200
    assert result["repetition_rate_after"] < 0.8 * result["repetition_rate_before"], result  # 3 seeds: -34 to -51 %
    assert result["loss_after"] < 1.1 * result["loss_before"], result  # the KL keeps the text model
    assert result["loss/value_last_log"] < result["loss/value_first_log"] / 5, result


def test_run_config_keeps_settings_but_never_secrets(tmp_path):
    from implicit_reasoning.trainer.core.state import RUN_CONFIG_NAME, save_run_config

    config = LatroConfig(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4,
                         stop_token="both", hub_token="hf_SECRETvalue123")
    save_run_config(config, "latro")
    text = (tmp_path / RUN_CONFIG_NAME).read_text()
    assert "hf_SECRETvalue123" not in text
    saved = json.loads(text)
    assert saved["stop_token"] == "both" and saved["trainer"] == "latro" and saved["rloo_k"] == 2


NAN_ON_RANK_1 = RANK_RESULT + """
import sys, datasets
from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer
from implicit_reasoning.trainer import LatroConfig, LatroTrainer

tok = build_demo_tokenizer()
model = build_demo_model(tok, hidden_size=32, intermediate_size=64, num_heads=2)
rows = [{"queries": f"Question: {i} + 1\\n", "responses": f" The answer is {i + 1}.", "groundtruth": str(i + 1)}
        for i in range(16)]
args = LatroConfig(output_dir=sys.argv[1], rloo_k=2, per_device_train_batch_size=4, max_steps=4, response_length=4,
                   use_cpu=True, ddp_backend="gloo", report_to="none", save_strategy="no", disable_tqdm=True,
                   max_nonfinite_updates=2)
trainer = LatroTrainer(model, args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tok)
objective = trainer.compute_objective

def nan_on_rank_1(model, batch):
    parts = objective(model, batch)
    if trainer.accelerator.process_index == 1:
        parts["loss"] = parts["loss"] * float("nan")
    return parts

trainer.compute_objective = nan_on_rank_1
try:
    trainer.train()
except RuntimeError as error:
    write_rank_result(sys.argv[2], trainer.accelerator.process_index, {"raised": str(error)})
    sys.exit(3)
"""


def test_nonfinite_loss_on_one_rank_stops_every_rank_together(tmp_path):
    """A NaN on one process must not leave the others waiting in an all-reduce (a hang)."""
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(NAN_ON_RANK_1)
    command = torchrun_command(script, tmp_path / "out", tmp_path / "ranks")
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    for record in rank_results(tmp_path / "ranks"):  # both ranks skipped the same updates and raised at the same step
        assert record["raised"].startswith("stopped at step 2: 2 non-finite updates in a row"), record


EI_WEIGHTS = RANK_RESULT + """
import sys, torch
from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer
from implicit_reasoning.trainer import MarkovianConfig, MarkovianTrainer

tok = build_demo_tokenizer()
model = build_demo_model(tok, hidden_size=32, intermediate_size=64, num_heads=2)
args = MarkovianConfig(output_dir=sys.argv[1], rloo_k=2, per_device_train_batch_size=4, method="ei", ei_warmup=0,
                       ei_std=0.0, use_cpu=True, ddp_backend="gloo", report_to=[])
trainer = MarkovianTrainer(model, args, processing_class=tok)
rank = trainer.accelerator.process_index
# global rewards [0, 0, 0, 10 | 10, 10, 10, 0]: mean 5, so rank 0 keeps 1 sample and rank 1 keeps 3
rewards = torch.tensor([0.0, 0.0, 0.0, 10.0]) if rank == 0 else torch.tensor([10.0, 10.0, 10.0, 0.0])
_, weights = trainer._advantages(rewards)
write_rank_result(sys.argv[2], rank, {"weights": weights.tolist()})
from implicit_reasoning.pipeline import end_distributed
end_distributed()
"""


def test_expert_iteration_weights_are_normalised_by_the_global_kept_count(tmp_path):
    """Each process averages its own rows and DDP averages the processes: a kept sample must weigh
    n_global / kept_global = 8 / 4 wherever it was kept (per-process counts gave 4 and 4/3)."""
    script = tmp_path / "ei_weights.py"
    script.write_text(EI_WEIGHTS)
    command = torchrun_command(script, tmp_path / "out", tmp_path / "ranks")
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert [r["weights"] for r in rank_results(tmp_path / "ranks")] == [[0.0, 0.0, 0.0, 2.0], [2.0, 2.0, 2.0, 0.0]]


def test_training_script_destroys_the_process_group_after_a_successful_run(monkeypatch, tmp_path):
    """A gloo group left alive at interpreter exit can SIGABRT a finished run; the script must end it."""
    import importlib.util

    import torch.distributed as dist

    import implicit_reasoning.pipeline as pipeline

    spec = importlib.util.spec_from_file_location("training_script", ROOT / "scripts" / "training.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    # the script is a thin wrapper: implicit_reasoning.cli.train imports the job runner when it runs
    monkeypatch.setattr(pipeline, "run_training", lambda name, config: pipeline.RunResult(after={}))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        script.main(["--model_name_or_path", "unused", "--output_dir", str(tmp_path / "out")])
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _fake_python(tmp_path) -> dict:
    """An environment whose `python` prints the arguments it was given (the shell scripts' command lines)."""
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "python $*"\n')
    fake.chmod(0o755)
    return {**ENV, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}


def test_training_sh_puts_extra_flags_on_top_of_the_demo_config(tmp_path):
    env = _fake_python(tmp_path)
    for trainer, flags in (("latro", ["--max_steps", "10"]), ("star", []), ("markovian", ["--seed", "3"])):
        done = subprocess.run(["bash", str(ROOT / "scripts/training.sh"), *flags], env={**env, "TRAINER": trainer},
                              capture_output=True, text=True, check=True)
        assert done.stdout.split() == ["python", "scripts/training.py", f"configs/demo_{trainer}.yaml", *flags]
    _, config = parse_training_args([str(ROOT / "configs/demo_latro.yaml"), "--max_steps", "10"])
    assert (config.max_steps, config.dataset_name) == (10, "arithmetic")  # the demo's data, not gsm8k


@pytest.mark.parametrize("given", [["tensorboard", "wandb"], ["tensorboard,wandb"], ["tensorboard, wandb"]])
def test_report_to_takes_every_hf_form(tmp_path, given):
    _, config = parse_training_args(["--trainer", "latro", "--output_dir", str(tmp_path), "--report_to", *given])
    assert config.report_to == ["tensorboard", "wandb"]
    (tmp_path / "run.yaml").write_text(f"trainer: latro\noutput_dir: {tmp_path}\nreport_to: {','.join(given)}\n")
    assert parse_training_args([str(tmp_path / "run.yaml")])[1].report_to == ["tensorboard", "wandb"]
    assert LatroConfig(output_dir=str(tmp_path), report_to=",".join(given)).report_to == ["tensorboard", "wandb"]
    assert LatroConfig(output_dir=str(tmp_path), report_to="none").report_to == []


def test_a_missing_tensorboard_names_the_extra_to_install(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "tensorboardX") else real(name, *a))
    with pytest.raises(ValueError, match=r"report_to=\['tensorboard'\]: tensorboard is not installed: "
                                         r"pip install 'implicit-reasoning\[tensorboard\]'"):
        LatroConfig(output_dir=str(tmp_path), report_to="tensorboard")


HELP_MODULES = """
import sys
from implicit_reasoning.cli import train
try:
    train(sys.argv[1:])
except SystemExit:
    pass
print("MODULES", *sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "trl", "peft")
                         or m.startswith("implicit_reasoning.trainer.")), file=sys.stderr)
"""


def _loaded_by_help(*flags) -> set[str]:
    done = subprocess.run([sys.executable, "-c", HELP_MODULES, "--help", *flags], env=ENV, capture_output=True,
                          text=True, timeout=300)
    line = next(line for line in done.stderr.splitlines() if line.startswith("MODULES"))
    return set(line.split()[1:])


def test_help_loads_no_training_stack():
    """`--help` imports neither torch nor transformers (it was 7-15 s); `--help --trainer NAME` imports that
    trainer's config (transformers' TrainingArguments), never a trainer, trl or the other configs."""
    bare = _loaded_by_help()
    assert not {m for m in bare if not m.startswith("implicit_reasoning.")}, sorted(bare)  # no torch, transformers
    assert not {m for m in bare if m.endswith(("_trainer", "_config"))}, sorted(bare)
    loaded = _loaded_by_help("--trainer", "star")
    assert "implicit_reasoning.trainer.star.config" in loaded and "transformers.training_args" in loaded
    assert not {m for m in loaded if m.endswith("_trainer") or m.startswith("trl")}, sorted(loaded)
    assert "implicit_reasoning.trainer.latro.config" not in loaded


def test_a_trainers_help_shows_its_own_fields_grouped_then_transformers():
    done = subprocess.run([sys.executable, str(ROOT / "scripts/training.py"), "--help", "--trainer", "star"], env=ENV,
                          capture_output=True, text=True, timeout=300)
    lines = done.stdout.splitlines()
    titles = [i for i, line in enumerate(lines) if line.startswith("Parameters that control")]
    hf = lines.index("transformers.TrainingArguments fields:")
    first = lambda flag: next(i for i, line in enumerate(lines) if line.strip().startswith(flag))  # noqa: E731
    assert lines[titles[0]] == "Parameters that control the iterations:" and len(titles) >= 5
    assert titles[0] < first("--num_iterations") < first("--dpo_beta") < first("--model_name_or_path") < hf
    assert hf < first("--adam_beta1") and hf < first("--push_to_hub")
    assert len(lines[0]) < 100  # a usage line, not every flag


@pytest.mark.parametrize("flags", [["--help"], ["--help", "--trainer", "sft"]])
def test_help_into_a_closed_pipe_ends_quietly(flags):
    """`--help | head`: the reader is gone before the help is written; no BrokenPipeError traceback."""
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts/training.py"), *flags], env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0 and "BrokenPipe" not in stderr and "Traceback" not in stderr, stderr[-2000:]


def test_a_run_prints_no_notice_the_user_cannot_act_on_and_keeps_real_warnings(tmp_path, tiny_model_dir):
    """--report_to none with WANDB_MODE=offline, no DeepSpeed in the run, on CPU: no wandb line, no DeepSpeed
    accelerator notice, no deprecation raised inside trl, no pin_memory warning; a warning about the user's own
    setting (prompts longer than max_prompt_length, left-truncated) still shows."""
    command = [sys.executable, str(ROOT / "scripts/training.py"), "--trainer", "latro", "--model_name_or_path",
               str(tiny_model_dir), "--dataset_name", "arithmetic", "--dataset_config",
               "num_terms=2,max_value=5,num_examples=8", "--rloo_k", "2", "--per_device_train_batch_size", "4",
               "--response_length", "4", "--max_steps", "1", "--save_strategy", "no", "--report_to", "none",
               "--use_cpu", "--max_eval_samples", "2", "--max_prompt_length", "6", "--output_dir", str(tmp_path / "out")]
    done = subprocess.run(command, env={**ENV, "WANDB_MODE": "offline"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout + done.stderr
    for notice in ("Running in WANDB offline mode", "Setting accelerator to CPU", "is_gradient_checkpointing",
                   "pin_memory"):
        assert notice not in printed, notice
    assert "left-truncat" in printed  # the user's own setting: kept
