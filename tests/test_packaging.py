"""The package as users get it: sdist and wheel, `twine check`, the wheel in a fresh virtual environment.

The build runs on a copy of the sources in a temporary folder (`python -m build --no-isolation`:
the sdist first, then the wheel built from the unpacked sdist, so a file the sdist forgot is
missing from the wheel too). The test venv is a plain one (no `--system-site-packages`, which
would expose the *base* interpreter's packages, not those of the venv or conda environment the
tests run in): a `.pth` file appends the RUNNING interpreter's site-packages directories to its
sys.path, so torch etc. are not reinstalled, whether the tests run from a venv, a conda
environment or a system install. A `.pth` line that is a path only extends sys.path: the `.pth`
files in those directories (the checkout's editable install among them) are not executed, so the
venv sees the wheel and never the checkout; the first test asserts exactly that. The wheel is
installed WITH its dependencies and `--no-index`: pip resolves every `install_requires` entry
against what is installed and fails if one is missing or out of range. Commands run from an
empty folder outside the repository, with no PYTHONPATH.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from implicit_reasoning.cli import COMMANDS
from implicit_reasoning.trainer import TRAINERS

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("setup.py", "MANIFEST.in", "README.md", "CHANGELOG.md", "requirements.txt", ".env.example",
           "implicit_reasoning", "configs")
SHIPPED = sorted(p.name for p in (ROOT / "configs").iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def _version() -> str:
    text = (ROOT / "implicit_reasoning" / "__init__.py").read_text()
    return re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.M).group(1)


def _check(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    _check([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)])
    return out


def running_site_packages() -> list[str]:
    """The site-packages directories of the interpreter running the tests (venv, conda or system)."""
    import site

    found = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        found.append(site.getusersitepackages())
    return [path for path in dict.fromkeys(found) if os.path.isdir(path)]


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory):
    folder = tmp_path_factory.mktemp("venv") / "env"
    _check([sys.executable, "-m", "venv", "--without-pip", str(folder)])
    python = folder / "bin" / "python"
    own = _check([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # after the venv's own site-packages: the wheel installed below wins over anything seen through these
    (Path(own) / "_running_environment.pth").write_text("\n".join(running_site_packages()) + "\n")
    wheel = next(dist.glob("*.whl"))  # pip comes from the running environment; it installs into the venv
    _check([str(python), "-m", "pip", "install", "--no-index", "--force-reinstall", "--no-deps", "-q", str(wheel)])
    # install_requires resolved for real (no index: nothing can be fetched): each must be met by an installed version
    resolved = _check([str(python), "-m", "pip", "install", "--no-index", str(wheel)])
    for requirement in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        assert f"Requirement already satisfied: {requirement}" in resolved.stdout, resolved.stdout[-3000:]
    return folder


@pytest.fixture
def outside(tmp_path):
    """An empty working directory outside the repository, and an environment without PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    return dict(cwd=tmp_path, env=env)


def test_sdist_and_wheel_pass_twine_and_carry_the_configs(dist):
    (sdist,), (wheel,) = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    checked = _check([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)])
    assert checked.stdout.count("PASSED") == 2
    top = f"implicit_reasoning-{_version()}"
    with tarfile.open(sdist) as archive:
        in_sdist = set(archive.getnames())
    assert {f"{top}/configs/{name}" for name in SHIPPED} <= in_sdist
    assert {f"{top}/CHANGELOG.md", f"{top}/implicit_reasoning/cli.py"} <= in_sdist
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        entry_points = archive.read(f"{top}.dist-info/entry_points.txt").decode()
    assert {f"implicit_reasoning/configs/{name}" for name in SHIPPED} <= in_wheel
    for command, function in COMMANDS.items():
        assert re.search(rf"^{command} = implicit_reasoning\.cli:{function}$", entry_points, re.M), command


def test_one_version_in_package_wheel_sdist_and_changelog(dist):
    version = _version()
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"implicit_reasoning-{version}.dist-info/METADATA").decode()
    assert re.search(r"^Version: (.+)$", metadata, re.M).group(1) == version
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        pkg_info = archive.extractfile(f"implicit_reasoning-{version}/PKG-INFO").read().decode()
    assert re.search(r"^Version: (.+)$", pkg_info, re.M).group(1) == version
    releases = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases and releases[0] == version, releases  # the newest entry is this version
    assert len(releases) == len(set(releases))


def test_the_venv_imports_the_wheel_not_the_checkout(venv, outside):
    code = "import implicit_reasoning, sys; print(implicit_reasoning.__file__); print(implicit_reasoning.__version__)"
    path, version = _check([str(venv / "bin" / "python"), "-c", code], **outside).stdout.split()
    assert Path(path).resolve().is_relative_to(venv.resolve()), path
    assert not Path(path).resolve().is_relative_to(ROOT), path
    assert version == _version()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_console_command_helps_and_lists_the_trainers(venv, outside, command):
    result = _check([str(venv / "bin" / command), "--help"], **outside)
    assert "usage:" in result.stdout and command in result.stdout  # its own usage, under its own name
    for name, (trainer_cls, _) in TRAINERS.items():
        assert f"{name} ({trainer_cls.__name__})" in result.stdout, (command, name)
    if command == "implicit-reasoning-train":  # one line per trainer, with its config class
        for name, (trainer_cls, config_cls) in TRAINERS.items():
            assert re.search(rf"^  {name} +{trainer_cls.__name__} / {config_cls.__name__}:", result.stdout, re.M)


def test_the_train_command_reads_a_packaged_yaml_by_name(venv, outside):
    result = _check([str(venv / "bin" / "implicit-reasoning-train"), "demo_markovian", "--help"], **outside)
    assert "--cot_length" in result.stdout and "outputs/demo_markovian" in result.stdout  # its trainer, its values
    missing = subprocess.run([str(venv / "bin" / "implicit-reasoning-train"), "no_such_config"], capture_output=True,
                             text=True, timeout=300, **outside)
    assert missing.returncode != 0 and "no shipped config of that name" in missing.stderr
    assert "demo_latro" in missing.stderr and "8gpu" in missing.stderr


PROBE = textwrap.dedent("""
    import json, sys, transformers
    from implicit_reasoning.config_files import config_dir, resolve_config, shipped_configs
    from implicit_reasoning.pipeline import parse_training_args, relaunch_command
    from implicit_reasoning.trainer import (LatroTrainer, MarkovianTrainer, PPOCurriculumTrainer, SFTBaselineTrainer,
                                            STaRTrainer)
    trainers = [LatroTrainer, MarkovianTrainer, STaRTrainer, PPOCurriculumTrainer, SFTBaselineTrainer]
    name, config = parse_training_args(["demo_latro", "--max_steps", "3"])
    print(json.dumps({
        "config_dir": str(config_dir()), "shipped": sorted(shipped_configs()),
        "8gpu": resolve_config("8gpu"), "relaunch": relaunch_command(["--config_file", "8gpu"], "train"),
        "trainers": [(cls.__name__, issubclass(cls, transformers.Trainer), sys.modules[cls.__module__].__file__)
                     for cls in trainers],
        "demo": [name, type(config).__name__, config.output_dir, config.max_steps, config.rloo_k],
    }))
""")


def test_packaged_configs_resolve_by_name_and_the_trainers_import(venv, outside):
    out = json.loads(_check([str(venv / "bin" / "python"), "-c", PROBE], **outside).stdout.strip().splitlines()[-1])
    site = Path(out["config_dir"])
    assert site.is_relative_to(venv.resolve()) and site.name == "configs" and out["shipped"] == SHIPPED
    assert out["8gpu"] == str(site / "8gpu.yaml")
    assert out["relaunch"] == [str(venv / "bin" / "python"), "-m", "accelerate.commands.launch", "--config_file",
                               str(site / "8gpu.yaml"), "--deepspeed_config_file", str(site / "ds_zero3.json"), "train"]
    for class_name, is_trainer, module_file in out["trainers"]:
        assert is_trainer and Path(module_file).is_relative_to(venv.resolve()), (class_name, module_file)
    assert len(out["trainers"]) == len(TRAINERS)
    assert out["demo"] == ["latro", "LatroConfig", "outputs/demo_latro", 3, 4]
