"""Secrets (SPEC §7): HF_TOKEN / WANDB_API_KEY from `.env`, or a `--hub_token` flag, never reach a file or the console.

A real job through `scripts/training.py` (the `implicit-reasoning-train` code path: `.env` loading,
the job runner, a rollout trainer, checkpoints, `report_to wandb` in offline mode). Everything the
run writes under the temporary folder (output dir, checkpoints with `training_args.bin`,
`run_config.json`, wandb's offline run, its logs and caches) and its stdout / stderr are searched
for the secret values, byte for byte, zip members (torch's pickles) unpacked.
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECRETS = {"HF_TOKEN": "hf_TESTSECRETdotenv0123456789abcdefXYZ", "WANDB_API_KEY": "wandbTESTSECRET0123456789abcdef01234567"}
FLAG_TOKEN = "hf_TESTSECRETflag9876543210zyxw"
PROJECT = "ir-secret-check-project"  # not a secret: proves the run read `.env`


def _contents(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if zipfile.is_zipfile(path):  # torch.save writes a zip: search every member too
        with zipfile.ZipFile(path) as archive:
            return [data, *(archive.read(name) for name in archive.namelist())]
    return [data]


@pytest.mark.parametrize("variant", ["dotenv", "hub_token_flag", "hub-token=dash_spelling"])
def test_no_secret_in_outputs_configs_logs_wandb_or_console(tmp_path, tiny_model_dir, variant):
    work = tmp_path / "work"
    work.mkdir()
    (work / ".env").write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()) + f"WANDB_PROJECT={PROJECT}\n")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("WANDB_")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb"), WANDB_CACHE_DIR=str(tmp_path / "wandb_cache"),
               WANDB_CONFIG_DIR=str(tmp_path / "wandb_config"), WANDB_DATA_DIR=str(tmp_path / "wandb_data"),
               WANDB_SILENT="false")
    command = [
        sys.executable, str(ROOT / "scripts/training.py"), "--trainer", "latro",
        "--model_name_or_path", str(tiny_model_dir), "--dataset_name", "arithmetic",
        "--dataset_config", "num_terms=2,max_value=5,num_examples=16", "--output_dir", "out",
        "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--logging_steps", "1",
        "--rloo_k", "2", "--response_length", "8", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "16", "--report_to", "wandb", "--use_cpu", "--disable_tqdm", "true",
    ]
    secrets = list(SECRETS.values())
    if variant == "hub_token_flag":
        command += ["--hub_token", FLAG_TOKEN]
        secrets.append(FLAG_TOKEN)
    if variant.startswith("hub-token="):  # HfArgumentParser takes the dash spelling too (wandb logged it once)
        command += [f"--hub-token={FLAG_TOKEN}"]
        secrets.append(FLAG_TOKEN)
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]

    out = work / "out"
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != work / ".env"]
    for expected in (out / "run_config.json", out / "training_args.bin", out / "checkpoint-1" / "training_args.bin",
                     out / "checkpoint-2" / "run_config.json"):
        assert expected in written, expected
    wandb_runs = [p for p in written if p.suffix == ".wandb"]
    assert wandb_runs and any(p.name == "debug.log" for p in written)  # wandb really ran, offline
    assert any(PROJECT.encode() in blob for p in wandb_runs for blob in _contents(p))  # `.env` was read
    for secret in secrets:
        assert secret not in result.stdout and secret not in result.stderr, secret
        leaks = [str(p.relative_to(tmp_path)) for p in written if any(secret.encode() in b for b in _contents(p))]
        assert not leaks, (secret, leaks)


def test_hub_token_given_in_python_is_moved_to_the_environment_and_never_saved(tmp_path, monkeypatch,
                                                                                 demo_tokenizer):
    from implicit_reasoning.data.registry import load_task_dataset
    from implicit_reasoning.demo import build_demo_model
    from implicit_reasoning.trainer import LatroConfig, LatroTrainer

    monkeypatch.delenv("HF_TOKEN", raising=False)
    token = "hf_TESTSECRETpythonapi5555aaaabbbbcccc"
    config = LatroConfig(output_dir=str(tmp_path / "out"), hub_token=token, max_steps=1, save_strategy="steps",
                         save_steps=1, rloo_k=2, per_device_train_batch_size=2, response_length=4,
                         dataset_name="arithmetic", report_to="none", use_cpu=True, disable_tqdm=True)
    assert config.hub_token is None and os.environ["HF_TOKEN"] == token
    rows = load_task_dataset("arithmetic", "train", demo_tokenizer, dataset_config="num_terms=2,num_examples=4")
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    trainer = LatroTrainer(model, config, train_dataset=rows, processing_class=demo_tokenizer)
    trainer.train()
    trainer.save_model()
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in written) and any(p.name == "run_config.json" for p in written)
    leaks = [str(p) for p in written if any(token.encode() in blob for blob in _contents(p))]
    assert not leaks


@pytest.mark.parametrize("spelling", ["--hub_token", "--hub-token", "--hub_tok", "--hub-t"])
def test_every_spelling_argparse_accepts_for_hub_token_is_hidden(spelling, monkeypatch):
    from implicit_reasoning.pipeline import hide_secret_flags

    monkeypatch.delenv("HF_TOKEN", raising=False)
    kept = hide_secret_flags(["--trainer", "latro", spelling, "hf_abc", "--hub_model_id", "me/x"])
    assert kept == ["--trainer", "latro", "--hub_model_id", "me/x"] and os.environ["HF_TOKEN"] == "hf_abc"
    assert hide_secret_flags(["--hub_", "x"]) == ["--hub_", "x"]  # ambiguous for argparse: not ours to take
