"""Sharded and multi-process training as users launch it, on 2 CPU processes.

* DeepSpeed ZeRO-3 (configs/8gpu.yaml) for every trainer and ZeRO-2 (configs/zero2_8gpu.yaml) for two,
  through `accelerate launch` with the SHIPPED files, only `--num_processes 2` overridden. One launch
  per ZeRO stage runs every scenario (`distributed_worker.py`): evaluate, train 2 updates (evaluating
  and checkpointing at each), save, evaluate; then resume from checkpoint-1 in another directory.
  Checked per scenario: both processes end with identical parameters; the resumed run ends with
  the uninterrupted run's weights, bit for bit; the saved model loads with
  `AutoModelForCausalLM.from_pretrained` and equals the gathered policy; evaluation ran before,
  during and after training. The launches run with a stale DeepSpeed JIT-build lock planted in
  their TORCH_EXTENSIONS_DIR (a killed build leaves one): they must not wait on it.
* The process group really ends in `end_distributed` (no gloo thread left for interpreter exit; DDP path).
* CPU-only launches: torchrun processes find each other without --use_cpu / --ddp_backend, and an
  accelerate launch that would silently start one process instead of two is an error.

Skipped, with the reason, where DeepSpeed is not installed.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
       "TOKENIZERS_PARALLELISM": "false"}
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None
needs_deepspeed = pytest.mark.skipif(not HAS_DEEPSPEED, reason="deepspeed is not installed (pip install deepspeed): "
                                                               "the ZeRO-2/3 launches need it")
DATA = "num_terms=2,max_value=5,num_examples=16"
COMMON = ["--dataset_name", "arithmetic", "--dataset_config", DATA, "--per_device_train_batch_size", "2",
          "--gradient_accumulation_steps", "2", "--learning_rate", "1e-2", "--logging_steps", "1", "--seed", "0",
          "--save_strategy", "steps", "--save_steps", "1", "--eval_strategy", "steps", "--eval_steps", "1",
          "--max_eval_samples", "4", "--per_device_eval_batch_size", "4", "--eval_max_new_tokens", "6",
          "--report_to", "none", "--disable_tqdm", "true", "--ddp_timeout", "300"]
STAR = ["--trainer", "star", "--num_iterations", "2", "--start_steps", "1", "--step_growth", "1.0",
        "--samples_per_train_question", "2", "--response_length", "6", "--gen_batch_size", "16",
        "--temperature", "0.01"]  # a question's samples agree: iteration 1 of a fresh model has no kept sample, no pair


def scenarios(model: str, preload: dict) -> dict[str, dict]:
    """name -> (trainer flags, resume step, built in memory?). Every one trains 2 updates."""
    path = ["--model_name_or_path", model]
    return {
        "latro": dict(argv=["--trainer", "latro", *path, "--rloo_k", "2", "--max_steps", "2", "--response_length", "6"]),
        # LoRA: no copy, the reference is the policy with its adapter disabled
        "latro_lora": dict(argv=["--trainer", "latro", *path, "--rloo_k", "2", "--max_steps", "2", "--response_length",
                                 "6", "--use_lora", "true", "--lora_r", "4"]),
        # a partitioned model built in memory: its reference (the critic) cannot be reloaded from anywhere
        "markovian": dict(argv=["--trainer", "markovian", "--tokenizer_name_or_path", model, "--rloo_k", "2",
                                "--max_steps", "2", "--cot_length", "4", "--max_prompt_length", "48"], in_memory=model),
        "markovian_ppo": dict(argv=["--trainer", "markovian", *path, "--method", "ppo", "--ppo_epochs", "1",
                                    "--rloo_k", "2", "--max_steps", "2", "--cot_length", "4", "--max_prompt_length", "48"]),
        # iteration 0 trains on preloaded rationales; iteration 1 (a fresh tiny model solves nothing) has nothing
        # to train on: held updates on every process
        "star_sft": dict(argv=[*STAR, *path, "--preload_generated", preload["sft"],
                               "--reset_model_every_iteration", "false"]),
        # DPO on preloaded pairs, then iteration 1 resets to the original weights (the paper's reset)
        "star_dpo": dict(argv=[*STAR, *path, "--preload_generated", preload["dpo"], "--train_strategy", "dpo"]),
        "ppo_curriculum": dict(argv=["--trainer", "ppo_curriculum", *path, "--max_steps", "2", "--ppo_epochs", "1",
                                     "--response_length", "6", "--reward_funcs", "answer_accuracy",
                                     "repetition_penalty"]),
    }


ZERO3 = ["latro", "latro_lora", "markovian", "markovian_ppo", "star_sft", "star_dpo", "ppo_curriculum"]
ZERO2 = ["latro", "star_dpo"]
LAUNCHES = {"zero3": ("8gpu.yaml", ZERO3), "zero2": ("zero2_8gpu.yaml", ZERO2)}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer

    path = tmp_path_factory.mktemp("tiny")
    tokenizer = build_demo_tokenizer(str(path))
    build_demo_model(tokenizer, hidden_size=32, intermediate_size=64, num_heads=2).save_pretrained(path)
    return str(path)


def preload_files(folder: Path, tokenizer) -> dict[str, str]:
    """STaR generations for iteration 0: a correct rationale per question (SFT), and a wrong one too (DPO pairs)."""
    from implicit_reasoning.data.registry import load_task_dataset
    from implicit_reasoning.trainer import STaRConfig

    rows = load_task_dataset("arithmetic", "train", tokenizer, dataset_config=DATA, cot_trigger=STaRConfig.cot_trigger)
    paths = {}
    for kind in ("sft", "dpo"):
        records = []
        for i, row in enumerate(rows):
            answers = [row["groundtruth"]] + (["99"] if kind == "dpo" else [])
            for answer in answers:
                records.append({"question_index": i, "question": row["question"], "prompt": row["queries"],
                                "rationale": f"{row['question']} = {answer}.\nAnswer: {answer}", "prediction": answer,
                                "correct": answer == row["groundtruth"], "hinted": False,
                                "groundtruth": row["groundtruth"]})
        paths[kind] = str(folder / f"preload_{kind}.jsonl")
        Path(paths[kind]).write_text("".join(json.dumps(r) + "\n" for r in records))
    return paths


def stale_jit_lock(folder: Path) -> dict:
    """A TORCH_EXTENSIONS_DIR holding the lock file that a DeepSpeed JIT build killed mid-way leaves behind."""
    lock = folder / "torch_extensions" / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    return {"TORCH_EXTENSIONS_DIR": str(folder / "torch_extensions")}


@pytest.fixture(scope="module")
def launches(tmp_path_factory, model_dir):
    """Runs both launches (once per module); returns {stage: (output folder, {scenario: spec})}."""
    from implicit_reasoning.runtime.models import load_tokenizer

    folder = tmp_path_factory.mktemp("distributed")
    specs = scenarios(model_dir, preload_files(folder, load_tokenizer(model_dir)))
    results = {}
    for stage, (config, names) in LAUNCHES.items():
        out = folder / stage
        out.mkdir()
        plan = [{"name": n, "argv": specs[n]["argv"] + COMMON, "resume_step": 1, "in_memory": specs[n].get("in_memory")}
                for n in names]
        (out / "plan.json").write_text(json.dumps(plan))
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"configs/{config}",
                   "--num_processes", "2", "--main_process_port", str(29650 + len(results)),
                   str(ROOT / "tests" / "distributed_worker.py"), str(out / "plan.json"), str(out)]
        result = subprocess.run(command, cwd=ROOT, env={**ENV, **stale_jit_lock(out)}, capture_output=True,
                                text=True, timeout=480)
        results[stage] = (out, result)
    return results


def _finished(launches, stage):
    out, result = launches[stage]
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def _policy(params: dict, name: str) -> dict:
    """The policy's part of a trained module (PPO trains policy + value network; LoRA: the adapters, named as
    transformers names them when it loads the saved adapter)."""
    prefix = {"ppo_curriculum": "policy.", "latro_lora": "base_model.model."}.get(name, "")
    part = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
    return {k: v for k, v in part.items() if "lora_" in k} if name == "latro_lora" else part


def _check_star_iterations(name, folder, phases, policy, initial):
    """Iteration 0 (update 1) trains on the preloaded data; iteration 1 has nothing to train on and is held:
    STaR-SFT keeps iteration 0's weights (DeepSpeed would have stepped Adam's moments on), STaR-DPO first resets
    to the original weights."""
    from transformers import AutoModelForCausalLM

    key = "pairs" if name == "star_dpo" else "kept_samples"
    assert [h[key] > 0 for h in phases["iterations"]] == [True, False], phases["iterations"]
    after_one = dict(AutoModelForCausalLM.from_pretrained(folder / "full" / "checkpoint-1").named_parameters())
    assert any(not torch.equal(initial[k], after_one[k]) for k in policy)
    expected = initial if name == "star_dpo" else after_one
    assert all(torch.equal(expected[k].detach().float(), v) for k, v in policy.items())


@needs_deepspeed
@pytest.mark.slow
@pytest.mark.parametrize("stage, name", [("zero3", n) for n in ZERO3] + [("zero2", n) for n in ZERO2])
def test_sharded_training_is_consistent_resumable_and_saves_a_loadable_model(launches, model_dir, stage, name):
    from transformers import AutoModelForCausalLM

    folder = _finished(launches, stage) / name
    ranks = [load_file(folder / f"full_rank{r}.safetensors") for r in (0, 1)]
    resumed = [load_file(folder / f"resumed_rank{r}.safetensors") for r in (0, 1)]
    for other in (ranks[1], resumed[0], resumed[1]):  # every process, and the resumed run: the same weights
        assert ranks[0].keys() == other.keys()
        assert all(torch.equal(ranks[0][k], other[k]) for k in ranks[0])
    saved = dict(AutoModelForCausalLM.from_pretrained(folder / "full").named_parameters())
    policy = _policy(ranks[0], name)
    assert policy and set(policy) <= set(saved)
    assert all(torch.equal(saved[k].detach().float(), v) for k, v in policy.items())
    initial = dict(AutoModelForCausalLM.from_pretrained(model_dir).named_parameters())
    phases = json.loads((folder / "full_rank0.json").read_text())
    if name.startswith("star"):
        _check_star_iterations(name, folder, phases, policy, initial)
    elif name == "latro_lora":  # lora_B starts at zero
        assert any(v.abs().max() > 0 for k, v in policy.items() if "lora_B" in k)
    else:
        assert any(not torch.equal(initial[k].detach(), v) for k, v in policy.items())
    uses_reference = name in ("latro", "markovian", "markovian_ppo", "ppo_curriculum")
    assert phases["refreshed_reference"] is (True if uses_reference else None)  # refresh_reference() copies it all
    assert phases["global_step"] == 2 and {1, 2} <= set(phases["eval_steps"]), phases  # (STaR also at step 0)
    assert any(k.startswith("eval_") for k in phases["before"]) and any(k.startswith("eval_") for k in phases["after"])


# ----------------------------------------------------------------------------- launches on CPU-only machines
def _settled(monkeypatch, accelerator: bool, world: str | None, deepspeed=None, **fields):
    from types import SimpleNamespace

    from implicit_reasoning.runtime import launch

    for name in ("WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "ACCELERATE_MIXED_PRECISION", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)
    if world is not None:
        monkeypatch.setenv("WORLD_SIZE", world)
        monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(launch, "has_accelerator_backend", lambda: accelerator)
    monkeypatch.setattr(launch, "skip_deepspeed_cpu_jit", lambda: None)
    config = SimpleNamespace(deepspeed=deepspeed, ddp_backend=None, use_cpu=False, **fields)
    launch.settle_launch(config)
    return config


def test_cpu_only_multi_process_launches_train_on_the_cpu_over_gloo(monkeypatch):
    ddp = _settled(monkeypatch, accelerator=False, world="2")
    assert ddp.use_cpu and ddp.ddp_backend is None  # accelerate then builds one gloo group (MULTI_CPU)
    ds = _settled(monkeypatch, accelerator=False, world="2", deepspeed="configs/ds_zero3.json")
    assert ds.ddp_backend == "gloo" and not ds.use_cpu  # DeepSpeed's group is the one accelerate sees
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # `accelerate launch` with a DeepSpeed config
    from types import SimpleNamespace

    from implicit_reasoning.runtime import launch

    via_accelerate = SimpleNamespace(deepspeed=None, ddp_backend=None, use_cpu=False)
    launch.settle_launch(via_accelerate)
    assert via_accelerate.ddp_backend == "gloo"
    for untouched in (_settled(monkeypatch, accelerator=True, world="2"), _settled(monkeypatch, accelerator=False,
                                                                                     world=None)):
        assert not untouched.use_cpu and untouched.ddp_backend is None  # GPUs, or a single process


def test_accelerate_starting_one_process_of_several_is_an_error(monkeypatch):
    from implicit_reasoning.runtime.launch import check_single_process_launch

    for name in ("WORLD_SIZE", "LOCAL_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    # what `accelerate launch --config_file configs/cpu.yaml --num_processes 2` hands its one process
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.raises(RuntimeError, match="ONE process.*--multi_gpu"):
        check_single_process_launch()
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun (`--multi_gpu`) started them all
    check_single_process_launch()
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("MASTER_ADDR")  # --num_processes 1
    check_single_process_launch()


TEARDOWN = '''
import json, os, sys
import implicit_reasoning.trainer  # what every job imports before its process group exists
import torch
from implicit_reasoning.pipeline import end_distributed
from implicit_reasoning.trainer import TrainerConfig

config = TrainerConfig(output_dir=sys.argv[1], report_to="none")  # sets up the (gloo) process group
ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 1))  # imports torch.distributed.nn
ddp(torch.ones(2, 3)).sum().backward()
try:
    import deepspeed.comm.torch  # noqa: what accelerate / trl import during a run, when installed
except ImportError:
    pass
cycle = {"ddp": ddp}
cycle["self"] = cycle  # a finished trainer: only a garbage collection frees it
del ddp, cycle
end_distributed()
names = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
with open(os.path.join(sys.argv[1], f"threads_{os.environ['RANK']}.json"), "w") as f:
    json.dump(names, f)
'''


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="lists threads through /proc (Linux)")
def test_end_distributed_leaves_no_gloo_thread_for_interpreter_exit(tmp_path):
    """A gloo group still alive at interpreter exit is torn down during finalization, where a worker thread that needs
    the GIL is killed: the rare SIGABRT ("terminate called without an active exception") of a finished run."""
    script = tmp_path / "teardown.py"
    script.write_text(TEARDOWN)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29671",
               str(script), str(tmp_path)]
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):
        left = json.loads((tmp_path / f"threads_{rank}.json").read_text())
        assert not [t for t in left if "gloo" in t], left


WARM_START = '''
import json, os, sys
from implicit_reasoning.demo import jobs
from implicit_reasoning.trainer import LatroConfig, trainer_class

jobs.DEMO_WARM_START = dict(max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3, warmup_steps=0)
out = sys.argv[1]
config = LatroConfig(output_dir=out, report_to="none", dataset_name="arithmetic", seed=0,
                     dataset_config="num_terms=2,max_value=5,num_examples=16")
model, _ = jobs.build_warm_start(config, os.path.join(out, "warm_start"), trainer_class("latro", config))
again, _ = jobs.build_warm_start(config, os.path.join(out, "warm_start"), trainer_class("latro", config))  # reused
sums = [float(p.double().sum()) for m in (model, again) for p in m.parameters()]
with open(os.path.join(out, f"warm_{os.environ['RANK']}.json"), "w") as f:
    json.dump(sums, f)
from implicit_reasoning.pipeline import end_distributed
end_distributed()
'''


def test_the_demo_warm_start_is_built_once_and_loaded_by_every_process(tmp_path):
    script = tmp_path / "warm.py"
    script.write_text(WARM_START)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29673",
               str(script), str(tmp_path)]
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("reusing warm start") == 1  # the second call, printed by the main process only
    sums = [json.loads((tmp_path / f"warm_{rank}.json").read_text()) for rank in (0, 1)]
    assert sums[0] == sums[1]  # both processes loaded the one saved warm start (twice)
    assert (tmp_path / "warm_start" / "model.safetensors").exists()
