"""Checks of the shipped launch configs and packaging metadata.

* every accelerate YAML under ``configs/`` loads with accelerate's own loader and
  describes the intended topology; for the DeepSpeed ones, accelerate's launch
  logic is run up to the environment it hands to the training processes, and
  ``TrainingArguments`` is built under that environment (in a subprocess, so the
  global DeepSpeed state never leaks into other tests);
* every ``ds_*.json`` parses, has the expected ZeRO stage, and after HF Trainer
  fills its ``"auto"`` values is accepted by DeepSpeed's own config parser;
* ``setup.py`` metadata, ``requirements.txt``, ``.env.example`` and ``.ci/run``.

The training-hyperparameter YAMLs (``latro_*.yaml`` ...) are not accelerate
configs; they are parsed with ``HfArgumentParser`` in another test module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import runpy
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# name -> what the accelerate config must say
ACCELERATE_CONFIGS = {
    "8gpu.yaml": dict(distributed_type="DEEPSPEED", num_processes=8, num_machines=1,
                      ds_file="configs/ds_zero3.json", zero_stage=3, use_cpu=False),
    "zero2_8gpu.yaml": dict(distributed_type="DEEPSPEED", num_processes=8, num_machines=1,
                            ds_file="configs/ds_zero2.json", zero_stage=2, use_cpu=False),
    "multinode.yaml": dict(distributed_type="DEEPSPEED", num_processes=16, num_machines=2,
                           ds_file="configs/ds_zero3.json", zero_stage=3, use_cpu=False),
    "1gpu.yaml": dict(distributed_type="NO", num_processes=1, num_machines=1,
                      ds_file=None, zero_stage=None, use_cpu=False, mixed_precision="bf16"),
    "cpu.yaml": dict(distributed_type="NO", num_processes=1, num_machines=1,
                     ds_file=None, zero_stage=None, use_cpu=True, mixed_precision="no"),
}
DS_JSONS = {"ds_zero2.json": 2, "ds_zero3.json": 3}
DS_ACCELERATE_CONFIGS = [n for n, e in ACCELERATE_CONFIGS.items() if e["ds_file"]]

# accelerate refuses these keys in the accelerate config when `deepspeed_config_file`
# is used (accelerate.utils.dataclasses.DeepSpeedPlugin._deepspeed_config_checks).
KEYS_FORBIDDEN_WITH_DS_FILE = {
    "gradient_accumulation_steps", "gradient_clipping", "zero_stage",
    "offload_optimizer_device", "offload_param_device", "offload_param_nvme_path",
    "offload_optimizer_nvme_path", "zero3_save_16bit_model",
}

HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None
needs_deepspeed = pytest.mark.skipif(not HAS_DEEPSPEED, reason="deepspeed is not installed")


def _is_accelerate_config(path: Path) -> bool:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return isinstance(data, dict) and ("distributed_type" in data or "compute_environment" in data)


def _load_accelerate(name: str):
    from accelerate.commands.config.config_args import load_config_from_file

    return load_config_from_file(str(CONFIGS / name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_python(code: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


def _last_json_line(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON result line in output:\n{stdout}")


# --------------------------------------------------------------------------------------
# accelerate YAMLs
# --------------------------------------------------------------------------------------


def test_expected_config_files_exist():
    for name in list(ACCELERATE_CONFIGS) + list(DS_JSONS):
        assert (CONFIGS / name).is_file(), f"configs/{name} is missing"


def test_every_accelerate_yaml_loads_and_is_known():
    """Any YAML that looks like an accelerate config must load (no unknown keys)."""
    found = sorted(p.name for p in CONFIGS.glob("*.yaml") if _is_accelerate_config(p))
    assert set(ACCELERATE_CONFIGS) <= set(found)
    for name in found:
        _load_accelerate(name)  # raises on unknown keys / bad enums
    # the other YAMLs are training-hyperparameter files: plain mappings
    for p in CONFIGS.glob("*.yaml"):
        if p.name not in found:
            assert isinstance(yaml.safe_load(p.read_text(encoding="utf-8")), dict), p.name


@pytest.mark.parametrize("name", sorted(ACCELERATE_CONFIGS))
def test_accelerate_config_contents(name):
    from accelerate.utils import ComputeEnvironment, DistributedType

    exp = ACCELERATE_CONFIGS[name]
    cfg = _load_accelerate(name)
    assert cfg.compute_environment == ComputeEnvironment.LOCAL_MACHINE
    assert cfg.distributed_type == DistributedType(exp["distributed_type"])
    assert cfg.num_processes == exp["num_processes"]
    assert cfg.num_machines == exp["num_machines"]
    assert cfg.machine_rank == 0
    assert bool(cfg.use_cpu) is exp["use_cpu"]

    if exp["ds_file"] is None:
        assert cfg.deepspeed_config == {}
        assert cfg.mixed_precision == exp["mixed_precision"]
        return

    ds = cfg.deepspeed_config
    assert ds["deepspeed_config_file"] == exp["ds_file"]
    ds_path = REPO / ds["deepspeed_config_file"]
    assert ds_path.is_file(), f"{name}: {ds['deepspeed_config_file']} does not exist"
    ds_json = json.loads(ds_path.read_text(encoding="utf-8"))
    assert ds_json["zero_optimization"]["stage"] == exp["zero_stage"]
    # With deepspeed_config_file, accelerate raises at start-up if the accelerate
    # config also sets mixed precision or any of the DeepSpeed knobs below; bf16
    # comes from the training arguments through "bf16.enabled": "auto".
    assert cfg.mixed_precision is None, f"{name}: drop `mixed_precision` (set bf16 in the DS JSON / TrainingArguments)"
    assert not (set(ds) & KEYS_FORBIDDEN_WITH_DS_FILE), f"{name}: {set(ds) & KEYS_FORBIDDEN_WITH_DS_FILE}"


def test_multinode_config_is_launchable_per_node():
    cfg = _load_accelerate("multinode.yaml")
    assert cfg.main_process_ip, "multinode.yaml needs a main_process_ip placeholder"
    assert isinstance(cfg.main_process_port, int) and 0 < cfg.main_process_port < 65536
    assert cfg.num_processes % cfg.num_machines == 0
    # "standard" = torchrun on every node (no pdsh / hostfile needed)
    assert cfg.deepspeed_config.get("deepspeed_multinode_launcher") == "standard"
    header = (CONFIGS / "multinode.yaml").read_text(encoding="utf-8")
    assert "--machine_rank" in header


# Runs accelerate's own launch logic (what `accelerate launch --config_file X` does
# before it spawns processes) for each config given on the command line, then, for
# DeepSpeed configs, builds TrainingArguments under the environment a training
# process would get. One subprocess for all configs (imports are the slow part);
# os.environ is restored between configs.
_SIMULATE_LAUNCH = textwrap.dedent(
    """
    import json, os, sys, tempfile, traceback
    from accelerate.commands.launch import launch_command_parser, _validate_launch_command
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_simple_launcher_cmd_env

    port, configs = sys.argv[1], sys.argv[2:]
    results = {}
    clean_env = dict(os.environ)
    for config in configs:
        os.environ.clear()
        os.environ.update(clean_env)
        try:
            args = launch_command_parser().parse_args(
                ["--config_file", config, "--main_process_port", port, "train.py"])
            args, defaults, mp_from_config = _validate_launch_command(args)
            if args.use_deepspeed:
                # as accelerate.commands.launch.launch_command does before deepspeed_launcher
                fields = list(defaults.deepspeed_config.keys())
                if mp_from_config:
                    fields.append("mixed_precision")
                args.deepspeed_fields_from_accelerate_config = ",".join(fields)
                _, env = prepare_deepspeed_cmd_env(args)
            else:
                _, env = prepare_simple_launcher_cmd_env(args)
            out = {"env": {k: v for k, v in env.items() if k.startswith("ACCELERATE_")},
                   "num_processes": args.num_processes}
            if args.use_deepspeed:
                os.environ.update(env)
                from transformers import TrainingArguments
                ta = TrainingArguments(output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=True,
                                       per_device_train_batch_size=4, gradient_accumulation_steps=12,
                                       report_to=[])
                plugin = ta.deepspeed_plugin
                out["zero_stage"] = plugin.zero_stage
                out["bf16"] = plugin.deepspeed_config.get("bf16")
                out["zero3_init"] = plugin.zero3_init_flag
                del ta, plugin
        except Exception:
            out = {"error": traceback.format_exc()}
        results[config] = out
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def launch_results():
    names = [n for n in ACCELERATE_CONFIGS if HAS_DEEPSPEED or not ACCELERATE_CONFIGS[n]["ds_file"]]
    r = _run_python(_SIMULATE_LAUNCH, str(_free_port()), *[f"configs/{n}" for n in names])
    assert r.returncode == 0, r.stderr[-4000:]
    results = _last_json_line(r.stdout)
    return {Path(k).name: v for k, v in results.items()}


@needs_deepspeed
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", DS_ACCELERATE_CONFIGS)
def test_deepspeed_config_survives_accelerate_launch(name, launch_results):
    """This is where a bad combination (e.g. `mixed_precision` together with
    `deepspeed_config_file`) fails, as it would at the start of a real run."""
    exp = ACCELERATE_CONFIGS[name]
    out = launch_results[name]
    assert "error" not in out, out.get("error")
    env = out["env"]
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert env["ACCELERATE_DEEPSPEED_CONFIG_FILE"] == exp["ds_file"]
    assert out["num_processes"] == exp["num_processes"]
    assert out["zero_stage"] == exp["zero_stage"]
    assert out["bf16"] == {"enabled": True}, "bf16: true in TrainingArguments must reach DeepSpeed"
    if exp["zero_stage"] == 3:
        assert out["zero3_init"] is True


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["1gpu.yaml", "cpu.yaml"])
def test_plain_config_launch_env(name, launch_results):
    exp = ACCELERATE_CONFIGS[name]
    out = launch_results[name]
    assert "error" not in out, out.get("error")
    env = out["env"]
    assert env["ACCELERATE_MIXED_PRECISION"] == exp["mixed_precision"]
    assert env["ACCELERATE_USE_CPU"] == str(exp["use_cpu"])
    assert "ACCELERATE_USE_DEEPSPEED" not in env
    assert out["num_processes"] == exp["num_processes"]


@pytest.mark.timeout(300)
def test_cpu_config_real_launch(tmp_path):
    """`accelerate launch --config_file configs/cpu.yaml` really starts one CPU process."""
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(
        """
        import json
        from accelerate import Accelerator
        acc = Accelerator()
        print(json.dumps({"type": str(acc.distributed_type), "device": str(acc.device),
                          "n": acc.num_processes, "mp": str(acc.mixed_precision)}))
        """
    ))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/cpu.yaml", str(script)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    out = _last_json_line(r.stdout)
    assert out["device"] == "cpu"
    assert out["n"] == 1
    assert out["type"].endswith("NO")
    assert out["mp"] == "no"


# --------------------------------------------------------------------------------------
# DeepSpeed JSONs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,stage", sorted(DS_JSONS.items()))
def test_ds_json_parses(name, stage):
    cfg = json.loads((CONFIGS / name).read_text(encoding="utf-8"))
    zero = cfg["zero_optimization"]
    assert zero["stage"] == stage
    # batch/accumulation/precision are left to HF Trainer, so one JSON serves all runs
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size"):
        assert cfg[key] == "auto", key
    assert cfg["bf16"]["enabled"] == "auto"
    assert zero["overlap_comm"] is True
    if stage == 3:
        # save_model writes a consolidated 16-bit state dict, not only shards
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    # HF Trainer builds the optimizer/scheduler from TrainingArguments
    assert "optimizer" not in cfg and "scheduler" not in cfg


# For each DeepSpeed JSON: let HF TrainingArguments / Trainer fill the "auto" values
# (as Trainer does at train start) and hand the result to DeepSpeed's config parser.
_FILL_DS = textwrap.dedent(
    """
    import json, sys, tempfile, traceback
    from types import SimpleNamespace
    from transformers import TrainingArguments
    from deepspeed.runtime.config import DeepSpeedConfig

    def autos(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from autos(v, prefix + k + ".")
            elif v == "auto":
                yield prefix + k

    results = {}
    for path in sys.argv[1:]:
        try:
            ta = TrainingArguments(output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=True,
                                   per_device_train_batch_size=4, gradient_accumulation_steps=12,
                                   max_grad_norm=1.0, deepspeed=path, report_to=[])
            hf = ta.hf_deepspeed_config
            hf.trainer_config_finalize(ta, SimpleNamespace(config=SimpleNamespace(hidden_size=64)), 10)
            cfg = hf.config
            parsed = DeepSpeedConfig(cfg)
            results[path] = {"autos": list(autos(cfg)), "stage": int(parsed.zero_optimization_stage),
                             "train_batch_size": parsed.train_batch_size,
                             "bf16": bool(cfg["bf16"]["enabled"])}
            del ta, hf
        except Exception:
            results[path] = {"error": traceback.format_exc()}
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def filled_ds_results():
    r = _run_python(_FILL_DS, *[f"configs/{n}" for n in sorted(DS_JSONS)])
    assert r.returncode == 0, r.stderr[-4000:]
    return {Path(k).name: v for k, v in _last_json_line(r.stdout).items()}


@needs_deepspeed
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name,stage", sorted(DS_JSONS.items()))
def test_ds_json_accepted_after_trainer_fills_auto(name, stage, filled_ds_results):
    out = filled_ds_results[name]
    assert "error" not in out, out.get("error")
    assert out["autos"] == []
    assert out["stage"] == stage
    assert out["train_batch_size"] == 4 * 12  # one process here
    assert out["bf16"] is True


# --------------------------------------------------------------------------------------
# packaging
# --------------------------------------------------------------------------------------


def _package_version() -> str:
    text = (REPO / "implicit_reasoning" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.M).group(1)


@pytest.fixture(scope="module")
def setup_kwargs():
    captured = {}
    with mock.patch("setuptools.setup", side_effect=lambda **kw: captured.update(kw)):
        cwd = os.getcwd()
        try:
            os.chdir(REPO)
            runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
        finally:
            os.chdir(cwd)
    assert captured, "setup.py did not call setuptools.setup"
    return captured


def _req_name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_setup_cli_name_and_version():
    r = subprocess.run([sys.executable, "setup.py", "--name", "--version"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
    assert lines[-2:] == ["implicit-reasoning", _package_version()]


def test_setup_metadata(setup_kwargs):
    kw = setup_kwargs
    assert kw["name"] == "implicit-reasoning"
    assert kw["version"] == _package_version()
    assert kw["python_requires"] == ">=3.10"
    assert "implicit_reasoning" in kw["packages"]
    assert all(p == "implicit_reasoning" or p.startswith("implicit_reasoning.") for p in kw["packages"])
    readme = REPO / "README.md"
    if readme.is_file():
        assert kw["long_description"] == readme.read_text(encoding="utf-8")
        assert kw["long_description_content_type"] == "text/markdown"


def test_setup_requirements(setup_kwargs):
    core = {_req_name(r): r for r in setup_kwargs["install_requires"]}
    for name in ("torch", "transformers", "trl", "accelerate", "peft", "datasets",
                 "wandb", "python-dotenv", "math-verify", "matplotlib", "pyyaml", "tqdm"):
        assert name in core, f"{name} missing from install_requires"
    # CUDA-only or torch-importing sdists must stay optional
    for name in ("deepspeed", "flash-attn", "vllm"):
        assert name not in core, f"{name} must not be in install_requires"

    extras = {k: {_req_name(r) for r in v} for k, v in setup_kwargs["extras_require"].items()}
    assert {"pytest", "pytest-timeout"} <= extras["dev"]
    assert extras["flash"] == {"flash-attn"}
    assert extras["vllm"] == {"vllm"}
    assert extras["deepspeed"] == {"deepspeed"}
    assert {"deepspeed", "flash-attn", "vllm"} <= extras["all"]


def test_requirements_txt_matches_setup(setup_kwargs):
    lines = [ln.split("#", 1)[0].strip() for ln in
             (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()]
    reqs = {_req_name(ln) for ln in lines if ln}
    core = {_req_name(r) for r in setup_kwargs["install_requires"]}
    assert reqs == core
    assert not reqs & {"deepspeed", "flash-attn", "vllm"}


def test_env_example():
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    assigned = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            assigned[key.strip()] = value.strip()
    for key in ("HF_TOKEN", "WANDB_API_KEY", "WANDB_PROJECT"):
        assert key in assigned, f".env.example does not name {key}"
    # never ship a secret value
    assert assigned["HF_TOKEN"] == "" and assigned["WANDB_API_KEY"] == ""


def test_ci_script():
    """.ci/run runs the README's own set-up lines (a fresh venv, pinned CPU torch first, the package, the test
    extras) and its test command, read from the fenced blocks after <!-- ci:setup --> / <!-- ci:test -->."""
    path = REPO / ".ci" / "run"
    assert os.access(path, os.X_OK), ".ci/run must be executable"
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    text = path.read_text(encoding="utf-8")
    assert "set -euo pipefail" in text and "readme_block.py setup" in text and "readme_block.py test" in text

    def block(name):
        done = subprocess.run([sys.executable, str(REPO / ".ci" / "readme_block.py"), name], capture_output=True,
                              text=True, check=True)
        return [ln.split("#")[0].strip() for ln in done.stdout.splitlines() if ln.split("#")[0].strip()]

    cmds = block("setup")
    assert cmds[0].startswith("python3 -m venv .venv") and ". .venv/bin/activate" in cmds[0]
    i_torch = next(i for i, c in enumerate(cmds) if "torch==" in c)
    i_pkg = next(i for i, c in enumerate(cmds) if "install -e" in c)
    i_ds = next(i for i, c in enumerate(cmds) if "deepspeed" in c)
    assert i_torch < i_pkg < i_ds
    assert "--no-build-isolation" in cmds[i_ds]
    assert block("test") == ["python -m pytest -q tests"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "```bash\npython -m pytest -q tests\n```" in readme  # the command a reader sees is the one CI runs


def test_readme_first_screen_holds_install_main_job_evaluation_and_tests():
    """A newcomer finds, in the README's first 60 lines, how to install, run the main job, evaluate and test."""
    head = "\n".join((REPO / "README.md").read_text(encoding="utf-8").splitlines()[:60])
    for command in ("pip install torch==", 'pip install -e ".[dev]"', "bash scripts/training.sh",
                    "accelerate launch --config_file configs/8gpu.yaml scripts/training.py", "bash scripts/evaluation.sh",
                    "python -m pytest -q tests", "<!-- ci:setup", "<!-- ci:test"):
        assert command in head, f"{command!r} is not in the README's first 60 lines"


def test_readme_and_docs_links_resolve():
    """Every relative link of README.md and docs/*.md names a file that exists (anchors aside)."""
    import re

    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "benchmarks").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+://|#|mailto:", target):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(REPO)} links to {target}, which does not exist"


def test_the_quick_loop_exclusions_name_existing_tests():
    """conftest's lists of what `-m fast` leaves out name modules and tests that exist (a renamed test would
    otherwise silently rejoin the quick loop)."""
    from conftest import HEAVY_MODULES, SLOW_FOR_THE_QUICK_LOOP

    for module in HEAVY_MODULES:
        assert (REPO / "tests" / f"{module}.py").is_file(), module
    for entry in SLOW_FOR_THE_QUICK_LOOP:
        module, name = entry.split("::")
        assert f"def {name}(" in (REPO / "tests" / f"{module}.py").read_text(encoding="utf-8"), entry
