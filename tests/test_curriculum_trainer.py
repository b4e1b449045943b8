"""The data curriculum inside real trainers (PPO and LaTRO on tiny models): what is measured, logged, drawn, saved
and resumed, checked against independent recomputations (plain HF forwards, a fresh CurriculumWeights)."""

import json
import math
import random
from types import SimpleNamespace

import datasets
import pytest
import torch
from transformers import AutoModelForCausalLM

from implicit_reasoning.demo import build_demo_model
from implicit_reasoning.objectives.curriculum import CurriculumWeights
from implicit_reasoning.trainer import (
    LatroConfig,
    LatroTrainer,
    PPOCurriculumConfig,
    PPOCurriculumTrainer,
)
from implicit_reasoning.trainer.core.curriculum import Curriculum
from implicit_reasoning.trainer.core.state import STATE_FILE

KINDS = ("constant", "random", "counting")  # the mixture's order: dataset k has mixture_index k
ROWS, TOKENS = 8, 24  # rows per dataset, tokens per text
PROMPT_LENGTH, RESPONSE_LENGTH = 8, 6  # PPO text rows: prompt = tokens [0, 8), continuation = tokens [8, 14)
ETA, FLOOR = 1.0, 0.1


# ------------------------------------------------------------------------------------------ data and model
def single_token_words(tokenizer) -> list[str]:
    """Words the demo BPE tokenizer encodes as one token both after a space and at the start ('17', 'answer', ...)."""
    vocab = tokenizer.get_vocab()
    words = sorted(w[1:] for w in vocab if w.startswith("Ġ") and len(w) > 1 and (w[1:].isalpha() or w[1:].isdigit()))
    return [w for w in words if tokenizer(" " + w, add_special_tokens=False).input_ids == [vocab["Ġ" + w]]
            and len(tokenizer(w, add_special_tokens=False).input_ids) == 1]


def texts_of(kind: str, words: list[str], n: int, seed: int) -> list[str]:
    """n texts of TOKENS single-token words (no leading space: the text loader strips texts)."""
    rng = random.Random(seed)
    if kind == "constant":  # the same short sentence, repeated; every row identical
        sentence = ["you", "will", "think", "then", "give", "the", "answer"]
        rows = [[sentence[j % len(sentence)] for j in range(TOKENS)] for _ in range(n)]
    elif kind == "random":  # uniform i.i.d. words: no model can beat ln(len(words)) nats/token on unseen rows
        rows = [[rng.choice(words) for _ in range(TOKENS)] for _ in range(n)]
    else:  # counting 1..12 over and over, each row from its own start: next = previous + 1 (mod 12)
        rows = [[str((i + j) % 12 + 1) for j in range(TOKENS)] for i in range(n)]
    return [" ".join(r) for r in rows]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, demo_tokenizer):
    """The three local jsonl datasets (column `text`) and the mixture entries naming them."""
    words = single_token_words(demo_tokenizer)
    assert len(words) > 100
    folder = tmp_path_factory.mktemp("corpora")
    paths = {}
    for kind in KINDS:
        paths[kind] = str(folder / f"{kind}.jsonl")
        with open(paths[kind], "w") as f:
            for text in texts_of(kind, words, ROWS, seed=1):
                assert len(demo_tokenizer(text, add_special_tokens=False).input_ids) == TOKENS
                f.write(json.dumps({"text": text}) + "\n")
    entries = [{"name": paths[k], "text_column": "text"} for k in KINDS]
    return SimpleNamespace(paths=paths, entries=entries, words=words)


@pytest.fixture(scope="module")
def base_model_dir(tmp_path_factory, demo_tokenizer, corpora):
    """A tiny demo model pre-trained on the three KINDS of text, so that measured difficulty means something.

    It sees the constant rows, counting from every start, and random-word texts drawn with another seed
    (never the datasets' own random rows): the first two are then predictable, the random rows stay at
    about ln(#words) nats/token. A randomly initialised model would give every dataset ~ln(vocab).
    """
    torch.manual_seed(0)
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    texts = (texts_of("constant", corpora.words, 4, 0) + texts_of("counting", corpora.words, 12, 0)
             + texts_of("random", corpora.words, 16, seed=1234))
    ids = torch.tensor([demo_tokenizer(t, add_special_tokens=False).input_ids for t in texts])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("base")
    model.save_pretrained(folder)
    return str(folder)


def load_base(folder):
    return AutoModelForCausalLM.from_pretrained(folder)


def ppo_args(output_dir, entries, **overrides) -> PPOCurriculumConfig:
    values = dict(
        output_dir=str(output_dir), datasets=entries, curriculum_rule="exp3", curriculum_eta=ETA,
        curriculum_floor=FLOOR, difficulty_sample_size=ROWS, difficulty_interval=1, freeze_interval=1,
        prompt_length=PROMPT_LENGTH, response_length=RESPONSE_LENGTH, per_device_train_batch_size=4,
        gradient_accumulation_steps=1, ppo_epochs=1, num_mini_batches=1, max_steps=4, logging_steps=1,
        save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, learning_rate=3e-4,
        rollout_batch_size=64, seed=0,
    )
    values.update(overrides)
    return PPOCurriculumConfig(**values)


def ppo_trainer(args, tokenizer, model_dir):
    train = PPOCurriculumTrainer.load_split(args, "train", tokenizer)
    return PPOCurriculumTrainer(load_base(model_dir), args, train_dataset=train, processing_class=tokenizer)


def record(trainer) -> SimpleNamespace:
    """Wrap the trainer's Curriculum: the rows drawn at each step, and the steps measured."""
    seen = SimpleNamespace(draws={}, measured=[])
    curriculum = trainer.curriculum
    draw, update = curriculum.draw, curriculum.update

    def recorded_draw(n, step, process_index):
        rows = draw(n, step, process_index)
        assert step not in seen.draws  # one draw per rollout
        seen.draws[step] = rows
        return rows

    def recorded_update(step, losses):
        seen.measured.append(step)
        return update(step, losses)

    curriculum.draw, curriculum.update = recorded_draw, recorded_update
    return seen


def curriculum_logs(trainer) -> list[dict]:
    return [h for h in trainer.state.log_history if any(k.startswith("curriculum/") for k in h)]


def per_dataset(log: dict, kind: str, labels: list[str]) -> list[float]:
    return [log[f"curriculum/{kind}/{label}"] for label in labels]


def plain_losses(model, tokenizer, prefixes, targets) -> list[float]:
    """Mean per-token -log p(target | prefix), one unpadded HF forward per row (float64 reduction)."""
    out = []
    with torch.no_grad():
        for prefix, target in zip(prefixes, targets):
            x = tokenizer(prefix).input_ids
            y = tokenizer(target, add_special_tokens=False).input_ids
            logits = model(torch.tensor([x + y])).logits[0, len(x) - 1 : -1].double()
            out.append(float(torch.nn.functional.cross_entropy(logits, torch.tensor(y))))
    return out


def moments(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, sum((v - mean) ** 2 for v in values) / len(values)


# ---------------------------------------------------------------------------------- the exp3 run (shared)
@pytest.fixture(scope="module")
def exp3_run(tmp_path_factory, demo_tokenizer, corpora, base_model_dir):
    """4 PPO steps on the 3-dataset mixture under exp3, one measurement per step, checkpoints 2 and 4."""
    out = tmp_path_factory.mktemp("exp3")
    args = ppo_args(out, corpora.entries, save_strategy="steps", save_steps=2)
    trainer = ppo_trainer(args, demo_tokenizer, base_model_dir)
    seen = record(trainer)
    trainer.train()
    return SimpleNamespace(trainer=trainer, seen=seen, out=out, args=args)


def test_exp3_weights_follow_the_measured_difficulties(exp3_run, demo_tokenizer, base_model_dir, corpora):
    trainer, seen, words = exp3_run.trainer, exp3_run.seen, corpora.words
    labels = trainer.curriculum.labels
    assert labels == [e["name"] for e in exp3_run.args.mixture]  # entry_label of a config-less entry: its name
    logs = curriculum_logs(trainer)
    # difficulty_interval=1: a measurement before every rollout (steps 0..3), logged with the step it precedes
    assert seen.measured == [0, 1, 2, 3] and sorted(seen.draws) == [0, 1, 2, 3]
    assert [h["step"] for h in logs] == [1, 2, 3, 4]

    for h in logs:  # a distribution, never below the floor, at every log
        w = per_dataset(h, "weight", labels)
        assert math.isclose(sum(w), 1.0, abs_tol=1e-12) and min(w) >= FLOOR

    # the first measurement is the untouched pre-trained model: recompute it with plain, unpacked forwards
    # (difficulty_sample_size = every row, so the sample's order does not matter for the mean / variance)
    base = load_base(base_model_dir).eval()
    rows = trainer.train_dataset
    for k, label in enumerate(labels):
        mine = rows.filter(lambda r, k=k: r["mixture_index"] == k)
        mean, var = moments(plain_losses(base, demo_tokenizer, mine["prompt"], mine["continuation"]))
        assert logs[0][f"curriculum/difficulty/{label}"] == pytest.approx(mean, rel=1e-5, abs=1e-6)
        assert logs[0][f"curriculum/variance/{label}"] == pytest.approx(var, rel=1e-4, abs=1e-6)
    assert logs[0][f"curriculum/variance/{labels[0]}"] == 0.0  # the constant rows are all the same row

    # The order: random words highest. Their continuation words are i.i.d. uniform over the word list, so no
    # model's expected loss is below ln(#words) = ln(116) = 4.75 nats (cross-entropy >= entropy); the pre-trained
    # model, confidently wrong on unseen words, gives ~10. Constant and counting are both deterministic
    # continuations the model learnt in pre-training: both come out near 0 (measured: constant 3.2e-3, counting
    # 2.2e-3 at every step). Their order at that level says where pre-training stopped, not which data is
    # harder, so only "both far below random" is asserted.
    for h in logs:
        constant, random_words, counting = per_dataset(h, "difficulty", labels)
        assert random_words > math.log(len(words)) and max(constant, counting) < 0.05

    # The weights are the rule's: a fresh CurriculumWeights fed the logged (mean, variance) in order
    replay = CurriculumWeights(labels, "exp3", ETA, FLOOR)
    for h in logs:
        replay.update(per_dataset(h, "difficulty", labels), per_dataset(h, "variance", labels))
        assert replay.weights.tolist() == per_dataset(h, "weight", labels)  # bit for bit: float64 all the way
    assert torch.equal(trainer.curriculum.weights.weights, replay.weights)

    # exp3 with K = 3 mixes in eps_t = min(1/3, sqrt(ln 3 / (3 t))) of uniform: eps_t = 1/3 for t <= 3 (3 ln 3 =
    # 3.3), so the first three updates are exactly uniform; the 4th (eps = 0.303) moves 1 - 3 eps = 9 % of the
    # mass by softmax(eta R), R ~ 0.34 mu. max_steps=4 gives exactly 4 updates; eta=1 makes the move visible.
    for h in logs[:3]:
        assert per_dataset(h, "weight", labels) == [1 / 3] * 3
    final = trainer.curriculum.weights.weights.tolist()
    assert final[1] == max(final) and final[1] - min(final) > 0.03  # the hardest (random words) gains

    prompts_of = [set(rows.filter(lambda r, k=k: r["mixture_index"] == k)["prompt"]) for k in range(3)]
    for drawn in seen.draws.values():  # each drawn row is a real row of the dataset its index names
        assert all(p in prompts_of[k] for p, k in zip(drawn["prompt"], drawn["mixture_index"]))
    # the draws follow the weights: many draws with the final weights, by dataset, within 4 sigma
    n = 6000
    counts = torch.bincount(torch.tensor(trainer.curriculum.draw(n, 100, 0)["mixture_index"]), minlength=3)
    for count, w in zip(counts.tolist(), final):
        assert abs(count - n * w) < 4 * math.sqrt(n * w * (1 - w))


def test_exp3_draws_by_the_configured_weights_until_it_has_learnt_something(tmp_path, demo_tokenizer, corpora,
                                                                           base_model_dir):
    """The measurement before the first draw must not make exp3's weights uniform (issue 18)."""
    entries = [{**entry, "weight": weight} for entry, weight in zip(corpora.entries, (1.0, 0.0, 0.0))]
    trainer = ppo_trainer(ppo_args(tmp_path, entries, curriculum_floor=0.0, max_steps=1), demo_tokenizer,
                          base_model_dir)
    seen = record(trainer)
    trainer.train()
    assert seen.measured == [0] and seen.draws[0]["mixture_index"] == [0, 0, 0, 0]
    assert curriculum_logs(trainer)[0][f"curriculum/weight/{trainer.curriculum.labels[0]}"] == 1.0


def test_checkpoint_holds_the_curriculum_state(exp3_run):
    trainer = exp3_run.trainer
    labels = trainer.curriculum.labels
    state = json.loads((exp3_run.out / "checkpoint-2" / STATE_FILE).read_text())["curriculum"]
    log = next(h for h in curriculum_logs(trainer) if h["step"] == 2)
    # saved after update 2, before the measurement of step 2: the weights of the step-1 measurement
    assert state["measured_step"] == 1
    assert state["weights"]["names"] == labels and state["weights"]["rule"] == "exp3" and state["weights"]["t"] == 2
    assert state["weights"]["weights"] == per_dataset(log, "weight", labels)
    assert state["weights"]["last_mu"] == per_dataset(log, "difficulty", labels)
    final = json.loads((exp3_run.out / "checkpoint-4" / STATE_FILE).read_text())["curriculum"]
    assert final["weights"]["weights"] == trainer.curriculum.weights.weights.tolist() and final["measured_step"] == 3


def test_resume_draws_and_weights_exactly_as_the_uninterrupted_run(exp3_run, tmp_path, demo_tokenizer,
                                                                   base_model_dir):
    first = exp3_run.trainer
    resumed = ppo_trainer(ppo_args(tmp_path, exp3_run.args.datasets), demo_tokenizer, base_model_dir)
    seen = record(resumed)
    resumed.train(resume_from_checkpoint=str(exp3_run.out / "checkpoint-2"))
    assert resumed.state.global_step == 4 and seen.measured == [2, 3]
    assert sorted(seen.draws) == [2, 3]
    for step in (2, 3):
        assert seen.draws[step] == exp3_run.seen.draws[step]  # the same rows, in the same order
    assert torch.equal(resumed.curriculum.weights.weights, first.curriculum.weights.weights)
    labels = first.curriculum.labels
    logs = curriculum_logs(first)
    for a, b in zip(logs[2:], curriculum_logs(resumed)[-2:]):  # the measurements of steps 2 and 3, bit for bit
        assert {k: v for k, v in a.items() if k.startswith("curriculum/")} == {
            k: v for k, v in b.items() if k.startswith("curriculum/")}
    # precondition: training moved the measured losses between steps 2 and 3 (so equality needs the exact model,
    # optimizer and sampling state), and the 4th exp3 update moved the weights off uniform
    assert per_dataset(logs[3], "difficulty", labels) != per_dataset(logs[2], "difficulty", labels)
    assert per_dataset(logs[2], "weight", labels) != first.curriculum.weights.weights.tolist()


# ------------------------------------------------------------------------------ a frozen copy between refreshes
@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory, demo_tokenizer, corpora, base_model_dir):
    """freeze_interval=2, difficulty_interval=1: steps 1 and 3 are measured by the copy taken at steps 0 and 2."""
    out = tmp_path_factory.mktemp("frozen")
    args = ppo_args(out, corpora.entries, freeze_interval=2, save_strategy="steps", save_steps=1)
    trainer = ppo_trainer(args, demo_tokenizer, base_model_dir)
    seen = record(trainer)
    trainer.train()
    return SimpleNamespace(trainer=trainer, seen=seen, out=out, args=args)


def test_frozen_copy_measures_between_refreshes(frozen_run):
    trainer = frozen_run.trainer
    labels = trainer.curriculum.labels
    mus = [per_dataset(h, "difficulty", labels) for h in curriculum_logs(trainer)]
    assert frozen_run.seen.measured == [0, 1, 2, 3] and len(mus) == 4
    assert mus[1] == mus[0] and mus[3] == mus[2]  # the same frozen weights measure the same losses, bit for bit
    assert mus[2] != mus[1]  # the refresh at step 2 took the trained weights
    assert trainer._frozen is not None  # the copy is kept (trainer-private; only read here)


@pytest.mark.parametrize("resume_at", [
    2,  # a refresh step: the resumed run takes its copy at step 2, as the uninterrupted run did
    3,  # between refreshes: the step-2 copy comes back from checkpoint-3 (curriculum_frozen.safetensors)
])
def test_resume_with_a_frozen_copy_reweights_exactly(frozen_run, resume_at, tmp_path, demo_tokenizer,
                                                     base_model_dir):
    args = ppo_args(tmp_path, frozen_run.args.datasets, freeze_interval=2)
    resumed = ppo_trainer(args, demo_tokenizer, base_model_dir)
    seen = record(resumed)
    resumed.train(resume_from_checkpoint=str(frozen_run.out / f"checkpoint-{resume_at}"))
    assert seen.measured == list(range(resume_at, 4))
    labels = resumed.curriculum.labels
    expected = [per_dataset(h, "difficulty", labels) for h in curriculum_logs(frozen_run.trainer)][resume_at:]
    assert [per_dataset(h, "difficulty", labels) for h in curriculum_logs(resumed)][-len(expected):] == expected
    for step in seen.draws:
        assert seen.draws[step] == frozen_run.seen.draws[step]
    assert torch.equal(resumed.curriculum.weights.weights, frozen_run.trainer.curriculum.weights.weights)


# ------------------------------------------------------------------- measuring when rollouts span several updates
def stub_curriculum(difficulty_interval: int, freeze_interval: int) -> Curriculum:
    mixture = [{"name": n, "config": None, "weight": 1.0} for n in ("a", "b")]
    config = SimpleNamespace(mixture=mixture, curriculum_rule="exp3", curriculum_eta=1.0, curriculum_floor=0.0,
                             difficulty_sample_size=1, difficulty_interval=difficulty_interval,
                             freeze_interval=freeze_interval)
    return Curriculum(datasets.Dataset.from_dict({"mixture_index": [0, 1]}), config, seed=0)


@pytest.mark.parametrize("updates_per_rollout,interval,freeze,measured,refreshed", [
    (1, 3, 6, [0, 3, 6, 9, 12], [0, 6, 12]),  # every step is drawn at: exactly the multiples
    (4, 50, 100, [0, 52, 100, 152, 200], [0, 100, 200]),  # PPO defaults (4 epochs): not only lcm(4, 50) = 100
    (3, 50, 100, [0, 51, 102, 150, 201], [0, 102, 201]),  # the refresh at the first measurement past 100, 200
])
def test_measure_at_the_first_draw_past_each_interval(updates_per_rollout, interval, freeze, measured, refreshed):
    curriculum = stub_curriculum(interval, freeze)
    got_measured, got_refreshed = [], []
    for step in range(0, measured[-1] + 1, updates_per_rollout):  # draws happen at rollout starts only
        if curriculum.due(step):
            got_measured.append(step)
            if curriculum.refresh_due(step):
                got_refreshed.append(step)
            curriculum.measured_step = step  # as update() records it
    assert got_measured == measured and got_refreshed == refreshed


def test_ppo_with_two_updates_per_rollout_measures_every_interval(tmp_path, demo_tokenizer, corpora,
                                                                   base_model_dir):
    # rollouts at steps 0, 2, 4; difficulty_interval=3 is crossed by the rollout at step 4
    args = ppo_args(tmp_path, corpora.entries, ppo_epochs=2, difficulty_interval=3, freeze_interval=3, max_steps=5)
    trainer = ppo_trainer(args, demo_tokenizer, base_model_dir)
    seen = record(trainer)
    trainer.train()
    assert sorted(seen.draws) == [0, 2, 4] and seen.measured == [0, 4]
    assert [h["step"] for h in curriculum_logs(trainer)] == [1, 5]


# ------------------------------------------------------------------------------------------- LaTRO on a mixture
ARITHMETIC = [{"name": "arithmetic", "config": "num_terms=2,max_value=5,num_examples=32"},
              {"name": "arithmetic", "config": "num_terms=3,max_value=9,num_examples=32"}]


def terms(query: str) -> int:
    """Terms of an arithmetic query "Question: 3 + 4 + 1\n..." (independent of the mixture columns)."""
    return query.split("Question: ")[1].split("\n")[0].count("+") + 1


def test_latro_draws_its_rollouts_from_the_mixture(tmp_path, demo_tokenizer):
    args = LatroConfig(
        output_dir=str(tmp_path), datasets=ARITHMETIC, difficulty_sample_size=4, difficulty_interval=1,
        freeze_interval=1, rloo_k=2, per_device_train_batch_size=8, max_steps=3, response_length=4,
        rollout_batch_size=64, learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, use_cpu=True,
    )
    train = LatroTrainer.load_split(args, "train", demo_tokenizer)
    assert {"queries", "responses", "groundtruth", "source", "mixture_index"} <= set(train.column_names)
    assert sorted(train["mixture_index"]) == [0] * 32 + [1] * 32 and set(train["source"]) == {"arithmetic"}
    assert all(terms(q) == k + 2 for q, k in zip(train["queries"], train["mixture_index"]))  # num_terms=2 / 3
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    trainer = LatroTrainer(model, args, train_dataset=train, processing_class=demo_tokenizer)
    assert trainer.curriculum is not None
    labels = [f"arithmetic:{e['config']}" for e in ARITHMETIC]
    assert trainer.curriculum.labels == labels
    first_measurement = [plain_losses(model.eval(), demo_tokenizer, *trainer.difficulty_texts(
        train.select(rows).to_dict())) for rows in trainer.curriculum.sample]
    seen = record(trainer)
    trainer.train()

    assert sorted(seen.draws) == [0, 1, 2] and seen.measured == [0, 1, 2]
    drawn = [(q, k) for rows in seen.draws.values() for q, k in zip(rows["queries"], rows["mixture_index"])]
    assert len(drawn) == 3 * 4 and {k for _, k in drawn} == {0, 1}  # 4 prompts (8 samples / K=2) per rollout
    assert all(terms(query) == k + 2 for query, k in drawn)  # the row is really from dataset k: 2 or 3 terms

    logs = curriculum_logs(trainer)
    assert [h["step"] for h in logs] == [1, 2, 3]
    for h in logs:
        w = per_dataset(h, "weight", labels)
        assert math.isclose(sum(w), 1.0, abs_tol=1e-12) and min(w) >= args.curriculum_floor
    for label, losses in zip(labels, first_measurement):  # difficulty = loss of " The answer is N." after the query
        mean, var = moments(losses)
        assert logs[0][f"curriculum/difficulty/{label}"] == pytest.approx(mean, rel=1e-5)
        assert logs[0][f"curriculum/variance/{label}"] == pytest.approx(var, rel=1e-4, abs=1e-7)


# ------------------------------------------------------------------------------------------ off and errors
def test_a_single_dataset_turns_the_curriculum_off(tmp_path, demo_tokenizer, corpora, base_model_dir):
    args = ppo_args(tmp_path, corpora.entries[2:], max_steps=2, save_strategy="steps", save_steps=2)
    trainer = ppo_trainer(args, demo_tokenizer, base_model_dir)
    assert trainer.curriculum is None and "mixture_index" in trainer.train_dataset.column_names
    trainer.train()
    assert trainer.state.global_step == 2 and [h["step"] for h in trainer.state.log_history if "loss" in h] == [1, 2]
    assert not any(k.startswith("curriculum/") for h in trainer.state.log_history for k in h)
    assert "curriculum" not in json.loads((tmp_path / "checkpoint-2" / STATE_FILE).read_text())
    latro = LatroConfig(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, use_cpu=True,
                        report_to="none", datasets=ARITHMETIC[:1])
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    train = LatroTrainer.load_split(latro, "train", demo_tokenizer)
    assert LatroTrainer(model, latro, train_dataset=train, processing_class=demo_tokenizer).curriculum is None


@pytest.mark.parametrize("config_class", [PPOCurriculumConfig, LatroConfig])
@pytest.mark.parametrize("overrides,message", [
    (dict(datasets=[{"name": "arithmetic", "weigth": 2}, "gsm8k"]),
     r"datasets\[0\]: unknown key\(s\) \['weigth'\]; allowed: \['name', 'config', 'path', 'text_column', 'weight'\]"),
    (dict(datasets=["arithmetic", "gsm8k", "arc_challenge"], curriculum_floor=0.34),
     r"curriculum_floor=0.34: must be in \[0, 1/3\] for 3 datasets"),
    (dict(datasets=["arithmetic", "gsm8k"], difficulty_interval=2, freeze_interval=3),
     r"freeze_interval=3 must be a multiple of difficulty_interval=2"),
    (dict(datasets=["arithmetic", "gsm8k"], curriculum_rule="bandit"),
     r"curriculum_rule='bandit': must be one of \('seed', 'exp3', 'learning_progress'\)"),
])
def test_config_errors_name_the_field(config_class, overrides, message):
    group = dict(rloo_k=2, per_device_train_batch_size=4) if config_class is LatroConfig else {}
    with pytest.raises(ValueError, match=message):
        config_class(output_dir="x", **group, **overrides)
