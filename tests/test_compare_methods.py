"""`implicit-reasoning-compare`: the aggregation against hand numbers, the budget rule, and `--quick` end to end."""

import json
import math
from pathlib import Path

import pytest

from implicit_reasoning.analysis.compare_report import above_warm_start, aggregate, markdown, mean_curve, spread
from implicit_reasoning.demo.compare import METHODS, main, method_config, rationale_of, should_stop

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RL_METHODS = [m for m in METHODS if m != "sft"]


def _record(method, seed, accuracy, tokens=0, seconds=10.0):
    final = {"accuracy": accuracy, "maj@8": accuracy / 2, "rationale_tokens": 12.0, "degeneration_rate": 0.0,
             "fragility_redacted": 1.0, "fragility_question_kept": float("nan")}
    return {"method": method, "seed": seed, "tokens": tokens, "steps": 40, "train_seconds": seconds,
            "wall_seconds": seconds + 5, "budget": 100, "final": final, "curve": []}


def test_spread_and_aggregate_against_hand_numbers():
    assert spread([0.5, 0.7, 0.9]) == {"mean": pytest.approx(0.7), "min": 0.5, "max": 0.9, "n": 3}
    assert spread([1.0, float("nan"), None]) == {"mean": 1.0, "min": 1.0, "max": 1.0, "n": 1}
    assert spread([])["mean"] is None
    records = [_record("warm_start", s, a) for s, a in enumerate([0.4, 0.5, 0.6])]
    records += [_record("latro", s, a, tokens=t, seconds=w)
                for s, a, t, w in zip(range(3), [0.8, 0.9, 0.85], [98, 101, 105], [60.0, 70.0, 80.0])]
    summary = aggregate(records)
    latro = summary["latro"]
    assert latro["seeds"] == [0, 1, 2]
    assert latro["accuracy"]["mean"] == pytest.approx(0.85) and latro["accuracy"]["min"] == 0.8
    assert latro["accuracy"]["max"] == 0.9
    assert latro["maj_key"] == "maj@8" and latro["maj"]["mean"] == pytest.approx(0.425)
    assert latro["tokens"] == {"mean": pytest.approx(304 / 3), "min": 98, "max": 105, "n": 3}
    assert latro["train_seconds"]["mean"] == pytest.approx(70.0)
    assert latro["fragility_question_kept"]["mean"] is None  # NaN everywhere: no number
    assert summary["warm_start"]["accuracy"]["mean"] == pytest.approx(0.5)
    assert above_warm_start(summary) == {"latro": True}
    table = markdown(summary, "cmd", 120.0, 100)
    assert "| LaTRO | 85.0 % [80.0, 90.0] | 42.5 % [40.0, 45.0] | 101 [98, 105] |" in table
    assert "| warm start | 50.0 % [40.0, 60.0] |" in table
    assert "Every method's mean accuracy is above the warm start's." in table


def test_a_method_below_the_warm_start_is_named():
    records = [_record("warm_start", 0, 0.6), _record("ppo", 0, 0.5), _record("latro", 0, 0.7)]
    summary = aggregate(records)
    assert above_warm_start(summary) == {"ppo": False, "latro": True}
    assert "Not above the warm start's mean accuracy: PPO (accuracy)." in markdown(summary, "cmd", 1.0, 100)


def test_the_mean_curve_ends_at_every_seeds_final_point():
    def curve(*points):
        return {"curve": [{"tokens": t, "accuracy": a} for t, a in points]}

    records = [curve((0, 0.5), (100, 0.7), (200, 0.9)), curve((0, 0.3), (120, 0.5))]
    xs, ys = mean_curve(records)
    assert xs == [0, pytest.approx(160)] and ys == [pytest.approx(0.4), pytest.approx(0.7)]  # (200+120)/2, (.9+.5)/2


def test_the_budget_rule_stops_at_the_check_point_closest_to_the_budget():
    assert not should_stop(0, 0, 0) and not should_stop(10**9, 10**6, 0)  # no budget (SFT): never
    assert should_stop(1000, 300, 1000) and should_stop(1200, 300, 1000)  # reached
    assert should_stop(900, 300, 1000)  # 100 short, one more block would overshoot by 200: stop here
    assert not should_stop(800, 300, 1000)  # 200 short, one more block overshoots by 100: go on
    assert not should_stop(400, 400, 1000)


def test_every_method_uses_the_shared_prompt_and_answer(demo_tokenizer, tmp_path):
    from implicit_reasoning.objectives.markovian import MarkovianPrompts
    from implicit_reasoning.trainer import trainer_class

    latro_name, latro = method_config("latro", 0, str(tmp_path / "latro"))
    shared = trainer_class(latro_name, latro).load_split(latro, "eval", demo_tokenizer)[0]
    assert shared["queries"].endswith("\nLet's think step by step.\n") and shared["queries"].startswith("Question: ")
    for method in METHODS:
        name, config = method_config(method, 0, str(tmp_path / method))
        assert config.seed == 0 and config.dataset_name == "arithmetic" and config.num_evaluations == 0
        if name == "markovian":  # the actor's prompt is the shared one; the critic scores " The answer is y"
            prompts = MarkovianPrompts(demo_tokenizer, config.instruction, True, config.use_chat_template,
                                       reasoning_prefix=config.reasoning_prefix, answer_marker=config.answer_marker)
            assert prompts.text(shared["question"]) == shared["queries"]
            assert prompts.marker_ids == demo_tokenizer(" The answer is").input_ids
        elif name == "ppo_curriculum":
            rows = trainer_class(name, config).load_split(config, "eval", demo_tokenizer)
            assert rows[0]["prompt"] == shared["queries"] and rows[0]["continuation"] == shared["responses"]
        else:
            rows = trainer_class(name, config).load_split(config, "eval", demo_tokenizer)
            assert rows[0]["queries"] == shared["queries"], method
    assert rationale_of("3 + 4 = 7. 7 + 5 = 12. The answer is 12.") == "3 + 4 = 7. 7 + 5 = 12."


def test_quick_comparison_end_to_end(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    summary = main(["--quick", "--runs", str(runs), "--out", str(out)])
    data = json.loads((out / "methods.json").read_text())
    assert set(data["summary"]) == {"warm_start", *METHODS} == set(summary)
    budget = data["budget_tokens"]
    by_method = {r["method"]: r for r in data["records"]}
    for method, record in by_method.items():
        final = record["final"]
        for key in ("accuracy", "maj@2", "degeneration_rate"):
            assert 0.0 <= final[key] <= 1.0, (method, key)
        assert final["num_questions"] == 40 and final["rationale_tokens"] > 0
        assert math.isfinite(final["fragility_redacted"])
        assert record["curve"] or method == "warm_start"
    assert by_method["sft"]["tokens"] == 0 and by_method["sft"]["steps"] == 4
    for method in RL_METHODS:  # every RL method generated, and stopped at the check point closest to the budget
        record = by_method[method]
        assert record["tokens"] > 0 and record["steps"] >= 1, method
        checks = [0, *record["check_tokens"]]
        assert checks[-1] == record["tokens"]
        blocks = [b - a for a, b in zip(checks, checks[1:])]
        assert should_stop(checks[-1], blocks[-1], budget), method  # stopped by the rule...
        assert not any(should_stop(t, b, budget) for t, b in zip(checks[1:-1], blocks[:-1])), method  # ...at once
        assert abs(record["tokens"] - budget) <= max(blocks), (method, record["tokens"], blocks)
        assert record["curve"][0]["tokens"] == 0 and record["curve"][-1]["tokens"] == record["tokens"]
    for name in ("methods_accuracy.png", "methods_curves.png", "methods_training.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    table = (out / "methods.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 1 + len(METHODS)  # header, warm start, one per method
    assert any(row.startswith("| STaR-DPO | ") for row in rows) and "Budget: equal generated tokens" in table
    again = tmp_path / "again"  # --report rebuilds the table and figures from the JSON alone
    main(["--report", str(out / "methods.json"), "--out", str(again)])
    assert (again / "methods.md").read_text() == table
    assert json.loads((again / "methods.json").read_text()) == data
    assert (again / "methods_accuracy.png").read_bytes()[:8] == PNG_MAGIC


def test_the_command_line_refuses_settings_that_would_be_ignored_or_clash():
    from implicit_reasoning.demo.compare import parse_args

    assert parse_args([]).seeds == [0, 1, 2] and parse_args(["--quick"]).seeds == [0]
    assert parse_args(["--quick", "--seeds", "0", "1", "2"]).seeds == [0, 1, 2]  # asked for: kept
    for bad in (["--budget", "0"], ["--budget", "-5"], ["--jobs", "0"], ["--seeds", "0", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_a_quick_run_never_writes_over_the_committed_results():
    """`--quick` (1 seed, 40 questions) writes outside benchmarks/ unless --out says otherwise; a full run there."""
    from implicit_reasoning.demo.compare import parse_args

    quick, full = parse_args(["--quick"]), parse_args([])
    assert Path(quick.out).resolve() != Path("benchmarks").resolve() and "benchmarks" not in Path(quick.out).parts
    assert Path(quick.runs).resolve() != Path(full.runs).resolve()
    assert full.out == "benchmarks"
    assert parse_args(["--quick", "--out", "somewhere"]).out == "somewhere"
