"""Fragility analysis (implicit_reasoning.analysis.fragility, scripts/fragility.py) on two tiny saved models."""

import json
import subprocess
import sys
import os
import random
from pathlib import Path

import pytest
import torch

from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fragility.py"
SAMPLES = [
    {"prompt": "3 + 4 + 5", "rationale": " 3 + 4 = 7. 7 + 5 = 12.", "answer": "12", "reward": 0.1},
    {"prompt": "10 + 2 + 9", "rationale": " 10 + 2 = 12. 12 + 9 = 21.", "answer": "21"},
    {"question": "1 + 1 + 1", "rationale": " 1 + 1 = 2. 2 + 1 = 3.", "answer": "3"},
]


@pytest.fixture(scope="module")
def fragility():
    from implicit_reasoning.analysis import fragility as module

    return module


def test_script_is_a_thin_wrapper_over_the_package():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "--markovian" in out.stdout and "--non_markovian" in out.stdout


def test_answer_logprobs_match_a_plain_forward(fragility):
    tok = build_demo_tokenizer()
    model = build_demo_model(tok, hidden_size=64, num_layers=2, intermediate_size=128).eval()
    settings = {"markovian": True, "instruction": "Add.", "use_chat_template": True}
    rows = [("3 + 4", " 3 + 4 = 7.", "7"), ("10 + 2 + 9", " 10 + 2 = 12. 12 + 9 = 21.", "21")]
    ours = fragility.answer_logprobs(model, tok, rows, settings, batch_size=1)
    for (question, cot, answer), value in zip(rows, ours):
        context = tok("Add. <Redacted>\nReasoning:" + cot + " Answer:").input_ids
        target = tok(" " + answer).input_ids
        ids = torch.tensor([context + target])
        with torch.no_grad():
            logps = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
        expected = logps[torch.arange(len(context) - 1, ids.shape[1] - 1), ids[0, len(context):]].mean()
        assert value == pytest.approx(float(expected), abs=1e-5)


def _save_run(tmp_path, name, seed, markovian):
    path = tmp_path / name
    tok = build_demo_tokenizer(save_dir=str(path))
    build_demo_model(tok, hidden_size=64, num_layers=2, intermediate_size=128, seed=seed).save_pretrained(path)
    (path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in SAMPLES))
    (path / "run_config.json").write_text(json.dumps({"trainer": "markovian", "markovian": markovian}))
    return str(path)


@pytest.mark.parametrize("kind", ["delete", "truncate_front", "truncate_back", "digit_replace", "char_replace"])
def test_perturbations_by_fraction(fragility, kind):
    text = " 12 + 35 = 47. 47 + 8 = 55."
    assert fragility.perturb(text, kind, 0.0, random.Random(0)) == text
    full = fragility.perturb(text, kind, 1.0, random.Random(0))
    half = fragility.perturb(text, kind, 0.4, random.Random(0))
    if kind in ("delete", "truncate_front", "truncate_back"):
        assert full == "" and len(half) == len(text) - round(0.4 * len(text))
    elif kind == "digit_replace":
        assert len(full) == len(text)
        assert all((a != b) == a.isdigit() for a, b in zip(text, full))  # every digit changed, nothing else
    else:
        assert len(full) == len(text) and all(a != b for a, b in zip(text, full))
    assert fragility.perturb(text, "truncate_front", 0.2, random.Random(0)) == text[round(0.2 * len(text)) :]


def test_fragility_compares_two_checkpoints(fragility, tmp_path):
    torch.set_num_threads(1)
    markovian = _save_run(tmp_path, "markovian", seed=0, markovian=True)
    ablation = _save_run(tmp_path, "ablation", seed=1, markovian=False)
    out = tmp_path / "out"
    results = fragility.main(["--markovian", markovian, "--non_markovian", ablation, "--output_dir", str(out)])
    table = json.loads((out / "fragility.json").read_text())
    assert table["fractions"] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert table["perturbations"] == list(fragility.PERTURBATIONS)
    assert set(table["models"]) == {"markovian", "non_markovian"}
    assert table["models"]["markovian"]["markovian"] is True and table["models"]["non_markovian"]["markovian"] is False
    for model in table["models"].values():
        assert model["num_samples"] == 3 and model["original_logprob"] < 0
        assert set(model["drop"]) == set(fragility.PERTURBATIONS)
        for kind, row in model["drop"].items():
            assert len(row["mean_drop"]) == len(row["std_drop"]) == 6
            assert row["mean_drop"][0] == 0.0 and row["std_drop"][0] == 0.0  # 0 % perturbation: no drop
            assert all(v == v for v in row["mean_drop"])  # no NaN
        assert any(v != 0.0 for v in model["drop"]["char_replace"]["mean_drop"][1:])
    assert table["models"]["markovian"]["drop"] != table["models"]["non_markovian"]["drop"]
    names = {f"fragility_{k}.png" for k in fragility.PERTURBATIONS} | {"fragility_all.png"}
    assert names <= set(os.listdir(out))
    assert all(os.path.getsize(p) > 1000 for p in results["plots"])


def test_the_last_logged_steps_cots_are_used_by_default(fragility, tmp_path):
    path = tmp_path / "samples.jsonl"
    rows = [{"step": step, "prompt": f"{step} + 1", "rationale": " r", "answer": "1"} for step in (5, 5, 10, 10, 10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["question"] for r in fragility.load_samples(str(path), None)] == ["10 + 1"] * 3
    assert len(fragility.load_samples(str(path), None, all_steps=True)) == 5
    assert len(fragility.load_samples(str(path), 2)) == 2


def test_a_vq_run_is_refused(fragility, tmp_path):
    (tmp_path / "run_config.json").write_text(json.dumps({"trainer": "markovian", "use_vq": True}))
    with pytest.raises(ValueError, match="use_vq run has no text CoTs"):
        fragility.run_settings(str(tmp_path), True)


def test_bad_samples_file_is_a_clear_error(fragility, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "1 + 1"}) + "\n")
    with pytest.raises(ValueError, match="line 1.*rationale"):
        fragility.load_samples(str(path), None)


@pytest.mark.parametrize("run_config, reason", [
    ({"trainer": "latro"}, "trained by 'latro', not markovian"),
    (None, "no run_config.json"),
    ({"trainer": "markovian", "markovian": False}, "says markovian=False; pass it as --non_markovian"),
])
def test_a_run_it_cannot_score_is_refused_with_the_reason(fragility, tmp_path, capsys, run_config, reason):
    """A LaTRO run (or one without run_config.json, or the ablation as --markovian) is refused before any scoring,
    instead of being scored in Markovian's format."""
    wrong = _save_run(tmp_path, "wrong", seed=0, markovian=True)
    if run_config is None:
        os.remove(os.path.join(wrong, "run_config.json"))
    else:
        Path(wrong, "run_config.json").write_text(json.dumps(run_config))
    ablation = _save_run(tmp_path, "ablation", seed=1, markovian=False)
    with pytest.raises(ValueError, match=f"--markovian {wrong}: .*{reason}"):
        fragility.main(["--markovian", wrong, "--non_markovian", ablation, "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists() and capsys.readouterr().out == ""
    from implicit_reasoning.cli import fragility as command

    with pytest.raises(ValueError, match=reason):  # the console command exits non-zero
        command(["--markovian", wrong, "--non_markovian", ablation, "--output_dir", str(tmp_path / "out")])


def test_the_output_is_a_table_that_says_how_many_cots_it_used(fragility, tmp_path, capsys):
    torch.set_num_threads(1)
    markovian = _save_run(tmp_path, "markovian", seed=0, markovian=True)
    ablation = _save_run(tmp_path, "ablation", seed=1, markovian=False)
    argv = ["--markovian", markovian, "--non_markovian", ablation, "--output_dir", str(tmp_path / "out"),
            "--perturbations", "delete", "digit_replace", "--fractions", "0", "0.5", "1"]
    fragility.main(argv)
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert len(lines) > 8 and not printed.lstrip().startswith("{")
    assert f"markovian: 3 CoTs from {markovian}/samples.jsonl" in printed and "fewer than 20" in printed
    header = next(line for line in lines if line.startswith("perturbation"))
    assert header.split() == ["perturbation", "model", "0%", "50%", "100%"]
    rows = [line.split() for line in lines if line.startswith(("delete", "digit_replace"))]
    assert [row[:2] for row in rows] == [["delete", "markovian"], ["digit_replace", "markovian"]]
    saved = json.loads((tmp_path / "out" / "fragility.json").read_text())
    assert float(rows[0][-1]) == pytest.approx(saved["models"]["markovian"]["drop"]["delete"]["mean_drop"][-1], abs=1e-3)
    fragility.main([*argv, "--json"])
    assert set(json.loads(capsys.readouterr().out)) == {"markovian", "non_markovian"}
