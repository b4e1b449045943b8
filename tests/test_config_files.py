"""Shipped configs by NAME (implicit_reasoning.config_files) in the job runner, and secret flags kept out of configs."""

import os
import pickle
import sys
from pathlib import Path

import pytest
import yaml

from implicit_reasoning.cli import load_env
from implicit_reasoning.config_files import config_dir, resolve_config, shipped_config, shipped_configs
from implicit_reasoning.pipeline import hide_secret_flags, parse_training_args, relaunch_command, split_config_file
from implicit_reasoning.trainer import LatroConfig, STaRConfig

ROOT = Path(__file__).resolve().parents[1]


def test_the_checkout_reads_the_repository_configs():
    assert config_dir() == ROOT / "configs"  # source checkout / editable install: the single source
    on_disk = {p.name for p in (ROOT / "configs").iterdir() if p.suffix in (".yaml", ".yml", ".json")}
    assert set(shipped_configs()) == on_disk and {"8gpu.yaml", "ds_zero3.json", "demo_latro.yaml"} <= on_disk


def test_names_resolve_from_any_directory_and_real_paths_win(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = str(ROOT / "configs" / "8gpu.yaml")
    for spelling in ("8gpu", "8gpu.yaml", "configs/8gpu.yaml"):
        assert resolve_config(spelling) == shipped, spelling
    assert resolve_config("ds_zero3") == str(ROOT / "configs" / "ds_zero3.json")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "8gpu.yaml").write_text("compute_environment: LOCAL_MACHINE\n")
    assert resolve_config("configs/8gpu.yaml") == "configs/8gpu.yaml"  # an existing path is used as given
    (tmp_path / "demo_latro").write_text("rloo_k: 2\n")
    assert resolve_config("demo_latro") == "demo_latro"
    assert shipped_config("some/dir/8gpu.yaml") is None  # only NAME or configs/NAME are names
    with pytest.raises(FileNotFoundError, match=r"--config_file 'no_such'.*shipped: .*8gpu.*demo_latro"):
        resolve_config("no_such", "--config_file")


def test_a_training_yaml_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name, config = parse_training_args(["demo_star", "--num_iterations", "1"])
    shipped = yaml.safe_load((ROOT / "configs" / "demo_star.yaml").read_text())
    assert name == "star" and isinstance(config, STaRConfig)
    assert config.output_dir == shipped["output_dir"] and config.num_iterations == 1  # the flag overrides
    name, config = parse_training_args(split_config_file(["--config_file", "demo_latro"]))
    assert (name, config.rloo_k) == ("latro", shipped_rloo_k())
    with pytest.raises(FileNotFoundError, match="'missing.yaml': no such file"):
        parse_training_args(["missing.yaml"])


def shipped_rloo_k() -> int:
    return yaml.safe_load((ROOT / "configs" / "demo_latro.yaml").read_text())["rloo_k"]


def test_help_of_a_named_yaml_shows_its_trainer_and_values(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        parse_training_args(["demo_latro", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "--rloo_k" in out and "outputs/demo_latro" in out


def test_accelerate_config_by_name_relaunches_with_its_deepspeed_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # configs/ds_zero3.json (the YAML's relative path) does not exist from here
    command = relaunch_command(["--trainer", "latro", "--config_file", "8gpu", "--rloo_k", "4"], "train.py")
    assert command == [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                       str(ROOT / "configs" / "8gpu.yaml"), "--deepspeed_config_file",
                       str(ROOT / "configs" / "ds_zero3.json"), "train.py", "--trainer", "latro", "--rloo_k", "4"]
    cpu = relaunch_command(["--config_file", "cpu"], "train.py")
    assert cpu[4:] == [str(ROOT / "configs" / "cpu.yaml"), "train.py"]  # no DeepSpeed: no extra flag
    assert relaunch_command(["--config_file", "demo_latro"], "train.py") is None  # a training YAML


def test_deepspeed_by_name_and_json_strings_untouched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from implicit_reasoning.pipeline import resolve_deepspeed

    values, rest = resolve_deepspeed({"deepspeed": "ds_zero2"}, ["--deepspeed", "ds_zero3.json", "--rloo_k", "2"])
    assert values["deepspeed"] == str(ROOT / "configs" / "ds_zero2.json")
    assert rest == ["--deepspeed", str(ROOT / "configs" / "ds_zero3.json"), "--rloo_k", "2"]
    inline = '{"zero_optimization": {"stage": 2}}'
    assert resolve_deepspeed({"deepspeed": inline}, ["--deepspeed", inline]) == ({"deepspeed": inline},
                                                                                 ["--deepspeed", inline])


def test_hub_token_leaves_argv_and_config_for_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "")  # records the original state: restored after the test
    argv = ["--output_dir", "o", "--hub_token", "hf_FLAGSECRET1", "--rloo_k", "2"]
    assert hide_secret_flags(argv) == ["--output_dir", "o", "--rloo_k", "2"]
    assert os.environ["HF_TOKEN"] == "hf_FLAGSECRET1"
    assert hide_secret_flags(["--hub_token=hf_FLAGSECRET2"]) == [] and os.environ["HF_TOKEN"] == "hf_FLAGSECRET2"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"trainer": "latro", "output_dir": str(tmp_path), "hub_token": "hf_YAMLSECRET3"}))
    name, config = parse_training_args([str(path)])
    assert isinstance(config, LatroConfig) and config.hub_token is None
    assert os.environ["HF_TOKEN"] == "hf_YAMLSECRET3"
    assert b"YAMLSECRET" not in pickle.dumps(config)  # what Trainer saves as training_args.bin


def test_dotenv_from_the_working_directory_never_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("IR_TEST_ONLY_FROM_FILE=file\nIR_TEST_ALREADY_SET=file\n")
    monkeypatch.delenv("IR_TEST_ONLY_FROM_FILE", raising=False)
    monkeypatch.setenv("IR_TEST_ALREADY_SET", "environment")
    try:
        assert load_env() == str(tmp_path / ".env")
        assert os.environ["IR_TEST_ONLY_FROM_FILE"] == "file"
        assert os.environ["IR_TEST_ALREADY_SET"] == "environment"
    finally:
        os.environ.pop("IR_TEST_ONLY_FROM_FILE", None)
