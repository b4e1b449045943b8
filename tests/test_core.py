"""The core shared by every trainer: reference determinism, wandb tables, tokenizers, LoRA bases, run configs."""

import glob
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from implicit_reasoning.trainer import LatroConfig, LatroTrainer, MarkovianConfig, MarkovianTrainer
from implicit_reasoning.trainer.core.state import RUN_CONFIG_NAME

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


def latro_args(tmp_path, **overrides) -> LatroConfig:
    values = dict(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, max_steps=2,
                  response_length=4, learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to="none",
                  disable_tqdm=True, use_cpu=True, dataset_name="arithmetic", per_device_eval_batch_size=8,
                  max_eval_samples=8, eval_max_new_tokens=6)
    values.update(overrides)
    return LatroConfig(**values)


def dropout_gpt2(tokenizer, p=0.1):
    """A GPT-2-shaped model with dropout in embeddings, attention and residuals, as GPT-2 ships."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                        embd_pdrop=p, attn_pdrop=p, resid_pdrop=p)
    config.eos_token_id = tokenizer.eos_token_id
    return GPT2LMHeadModel(config)


# --------------------------------------------------------------- the reference is deterministic
@pytest.mark.parametrize("use_lora", [True, False], ids=["lora", "separate-copy"])
def test_reference_runs_without_dropout_in_every_path(tmp_path, word_tokenizer, addition_dataset, use_lora):
    model = dropout_gpt2(word_tokenizer)
    model.save_pretrained(tmp_path / "base")
    lora = dict(use_lora=True, lora_r=4, lora_dropout=0.1, model_name_or_path=str(tmp_path / "base")) if use_lora else {}
    args = latro_args(tmp_path, disable_dropout=False, **lora)  # keep the base model's dropout for real
    trainer = LatroTrainer(model, args, train_dataset=addition_dataset, processing_class=word_tokenizer)
    trainer.model.train()  # as inside a training step
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    policy = [trainer.model(ids).logits for _ in range(2)]
    assert not torch.allclose(policy[0], policy[1])  # precondition: the policy itself does drop out
    with trainer.reference_model() as ref:
        first, second = ref(ids).logits, ref(ids).logits
    assert torch.equal(first, second)
    assert trainer.model.training  # and training mode comes back afterwards
    expected = AutoModelForCausalLM.from_pretrained(tmp_path / "base").eval()(ids).logits
    assert torch.allclose(first, expected, atol=1e-5)  # exactly the frozen base


def test_markovian_critic_kl_and_baseline_are_deterministic_with_lora_dropout(tmp_path, word_tokenizer):
    model = dropout_gpt2(word_tokenizer)
    model.save_pretrained(tmp_path / "base")
    args = MarkovianConfig(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, report_to=[],
                           use_cpu=True, cot_length=3, use_lora=True, lora_r=4, lora_dropout=0.2, disable_dropout=False,
                           model_name_or_path=str(tmp_path / "base"), instruction="Add")
    trainer = MarkovianTrainer(model, args, processing_class=word_tokenizer)
    trainer.model.train()
    batch = {**trainer.make_rollout({"question": ["3 + 4", "1 + 2"], "answer": ["7", "3"]}), "rollout_pass": 0}
    assert torch.equal(trainer._critic_logits(batch), trainer._critic_logits(batch))


def test_disable_dropout_turns_every_dropout_off_and_lora_dropout_needs_it_off(tmp_path, word_tokenizer,
                                                                               addition_dataset):
    model = dropout_gpt2(word_tokenizer)
    model.save_pretrained(tmp_path / "base")
    lora = dict(use_lora=True, lora_r=4, model_name_or_path=str(tmp_path / "base"))
    trainer = LatroTrainer(model, latro_args(tmp_path, **lora), train_dataset=addition_dataset,
                           processing_class=word_tokenizer)
    rates = {name: m.p for name, m in trainer.model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert rates and set(rates.values()) == {0}
    with pytest.raises(ValueError, match="lora_dropout=0.2 with disable_dropout=True"):
        latro_args(tmp_path, lora_dropout=0.2, **lora)
    kept = LatroTrainer(dropout_gpt2(word_tokenizer), latro_args(tmp_path, lora_dropout=0.2, disable_dropout=False,
                                                                 **lora),
                        train_dataset=addition_dataset, processing_class=word_tokenizer)
    rates = {name: m.p for name, m in kept.model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert {p for n, p in rates.items() if "lora_dropout" in n} == {0.2}
    assert {p for n, p in rates.items() if "lora_dropout" not in n} == {0.1}


# --------------------------------------------------------------------------- wandb tables
def _wandb_history(run_dir: str, timeout: float = 30.0) -> list[set[str]]:
    """Top-level keys of every history row in an offline run's .wandb file, once wandb's writer has closed it
    (the run's `exit` record is in the file: the writer process finishes after `wandb.finish()` returns)."""
    deadline = time.time() + timeout
    while True:
        kinds, rows = _wandb_records(run_dir)
        if "exit" in kinds or time.time() > deadline:
            return rows
        time.sleep(0.2)


def _wandb_records(run_dir: str) -> tuple[set[str], list[set[str]]]:
    """(record kinds, history rows) of an offline run's .wandb file (a LevelDB-style record log)."""
    from wandb.proto import wandb_internal_pb2

    files = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    if not files:
        return set(), []
    data = Path(files[0]).read_bytes()
    block, position, records, pending = 32768, 7, [], b""  # 7-byte file header ":W&B" + magic + version
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a chunk header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            break
        chunk, position = data[position + 7 : position + 7 + length], position + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL or LAST: a whole record
            records.append(pending)
    kinds, rows = set(), []
    for raw in records:
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(raw)
        except Exception:  # a record still being written
            continue
        kinds.add(record.WhichOneof("record_type"))
        if record.WhichOneof("record_type") == "history":
            rows.append({(list(item.nested_key) or [item.key])[0] for item in record.history.item})
    return kinds, rows


def test_wandb_keeps_every_samples_table_when_evaluation_logs_in_between(
    tmp_path, tiny_llama, demo_tokenizer, addition_dataset, monkeypatch
):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    args = latro_args(tmp_path, report_to=["wandb"], run_name="ir-test", max_steps=3, eval_strategy="steps",
                      eval_steps=1, max_eval_samples=2)
    trainer = LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, eval_dataset=addition_dataset,
                           processing_class=demo_tokenizer)
    trainer.train()
    run_dir = str(Path(wandb.run.dir).parent)  # wandb keeps its first settings for the process: ask the run
    wandb.finish()
    history = _wandb_history(run_dir)
    assert sum("eval/accuracy" in row for row in history) == 3  # precondition: evaluations logged in between
    assert sum("samples" in row for row in history) == 3  # one table per training log, none dropped
    tables = sorted(glob.glob(os.path.join(run_dir, "files/media/table/samples_*.table.json")))
    table = json.loads(Path(tables[0]).read_text())
    assert table["columns"] == ["prompt", "rationale", "answer", "reward", "advantage"]


# ---------------------------------------------------------------------------- tokenizers
def test_the_users_tokenizer_object_is_never_modified(tmp_path, tiny_gpt2, word_tokenizer, addition_dataset):
    trainer = LatroTrainer(tiny_gpt2, latro_args(tmp_path), train_dataset=addition_dataset,
                           processing_class=word_tokenizer)
    assert word_tokenizer.pad_token is None and word_tokenizer.padding_side == "right"
    assert trainer.processing_class is not word_tokenizer and trainer.processing_class.padding_side == "left"


def test_model_dir_without_tokenizer_files_fails_early_and_names_the_field(tmp_path, word_tokenizer,
                                                                            addition_dataset):
    model_dir = tmp_path / "weights_only"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(word_tokenizer), n_embd=16, n_layer=1, n_head=2)).save_pretrained(
        model_dir)
    args = latro_args(tmp_path / "out", model_name_or_path=str(model_dir))
    with pytest.raises(ValueError, match="tokenizer_name_or_path"):
        LatroTrainer(str(model_dir), args, train_dataset=addition_dataset)
    word_tokenizer.save_pretrained(tmp_path / "tok")
    args = latro_args(tmp_path / "out", model_name_or_path=str(model_dir), tokenizer_name_or_path=str(tmp_path / "tok"))
    trainer = LatroTrainer(str(model_dir), args, train_dataset=addition_dataset)
    assert trainer.processing_class("3 + 4", add_special_tokens=False).input_ids  # a real vocabulary


def test_a_prompt_that_encodes_to_nothing_is_a_clear_error():
    from implicit_reasoning.runtime.models import encode_prompt

    class Empty:
        bos_token = None

        def __call__(self, text, add_special_tokens=True):
            return type("Encoding", (), {"input_ids": []})()

    with pytest.raises(ValueError, match="prompt 'Question: 3' encodes to no tokens"):
        encode_prompt(Empty(), "Question: 3", 16)


# --------------------------------------------------------------------------- LoRA base path
def test_lora_on_an_in_memory_model_fails_at_init_and_says_what_to_pass(tmp_path, tiny_llama, demo_tokenizer,
                                                                          addition_dataset):
    with pytest.raises(ValueError, match="use_lora=True with a model built in memory.*model_name_or_path=DIR"):
        LatroTrainer(tiny_llama, latro_args(tmp_path, use_lora=True), train_dataset=addition_dataset,
                     processing_class=demo_tokenizer)


def test_saved_adapter_records_a_loadable_base_and_evaluates(tmp_path, tiny_llama, demo_tokenizer, addition_dataset):
    base = tmp_path / "base"
    tiny_llama.save_pretrained(base)
    args = latro_args(tmp_path / "run", use_lora=True, lora_r=4, model_name_or_path=os.path.relpath(base),
                      max_steps=1)
    trainer = LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer)
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(base.resolve())  # absolute: loads from anywhere
    run = json.loads((tmp_path / "adapter" / RUN_CONFIG_NAME).read_text())
    assert run["trainer"] == "latro" and run["base_model_name_or_path"] == str(base.resolve())
    command = [sys.executable, str(ROOT / "scripts/evaluation.py"), "--model_name_or_path", str(tmp_path / "adapter"),
               "--split", "test", "--eval_num_samples", "1", "--max_eval_samples", "4",
               "--output_dir", str(tmp_path / "eval"), "--dataset_config", "num_examples=4"]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300, cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["num_questions"] == 4


def test_an_adapter_without_a_base_is_a_clear_error_not_a_hub_retry(tmp_path):
    from implicit_reasoning.evaluate import load_for_eval

    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": None, "peft_type": "LORA"}))
    with pytest.raises(ValueError, match="records no base model.*--base_model_name_or_path"):
        load_for_eval(str(tmp_path), "auto")


# -------------------------------------------------------------- checkpoints evaluate as trained
def test_a_markovian_checkpoint_from_the_python_api_evaluates_as_markovian(tmp_path, demo_tokenizer):
    from implicit_reasoning.data.registry import load_markovian_examples
    from implicit_reasoning.demo import build_demo_model

    data = load_markovian_examples("arithmetic", "train", demo_tokenizer,
                                   dataset_config="num_terms=2,max_value=5,num_examples=8")
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    model.save_pretrained(tmp_path / "base")
    args = MarkovianConfig(output_dir=str(tmp_path / "run"), rloo_k=2, per_device_train_batch_size=4, max_steps=1,
                           cot_length=4, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                           dataset_name="arithmetic", dataset_config="num_terms=2,max_value=5,num_examples=4",
                           temperature=0.5, top_p=0.9)
    trainer = MarkovianTrainer(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), args, train_dataset=data,
                               processing_class=demo_tokenizer)
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    command = [sys.executable, str(ROOT / "scripts/evaluation.py"), "--model_name_or_path", str(tmp_path / "final"),
               "--split", "test", "--eval_num_samples", "1", "--output_dir", str(tmp_path / "eval")]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["trainer"] == "markovian" and "answer_logprob" in summary  # the critic answered from CoTs
    record = json.loads((tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()[0])
    assert record["completion"].startswith("Answer:") and "rationale" in record


def test_evaluation_takes_sampling_from_the_run_and_flags_win(tmp_path):
    from implicit_reasoning.evaluate import EvaluationArguments, _eval_config

    run = {"trainer": "latro", "temperature": 0.3, "top_p": 0.8, "top_k": 7, "cot_trigger": "Add.",
           "response_length": 12, "dataset_name": "arithmetic", "use_lora": True, "seed": 42, "rloo_k": 3,
           "per_device_train_batch_size": 6, "learning_rate": 0.5}
    config = _eval_config(LatroConfig, run, EvaluationArguments(model_name_or_path="m"), str(tmp_path))
    assert config.eval_sampling() == {"temperature": 0.3, "top_p": 0.8, "top_k": 7}
    assert (config.seed, config.rloo_k, config.learning_rate) == (42, 3, LatroConfig.learning_rate)  # the seed
    # draws generated data sets: the script evaluates the questions the run evaluated on
    assert (config.cot_trigger, config.eval_budget, config.use_lora) == ("Add.", 44, False)
    flags = EvaluationArguments(model_name_or_path="m", temperature=1.0, response_length=20)
    config = _eval_config(LatroConfig, run, flags, str(tmp_path))
    assert config.eval_sampling()["temperature"] == 1.0 and config.response_length == 20
    # the subset the run evaluated on during training does not carry over; another dataset drops the run's config
    run.update(max_eval_samples=8, sanity_check=True, dataset_config="num_terms=2")
    config = _eval_config(LatroConfig, run, EvaluationArguments(model_name_or_path="m"), str(tmp_path))
    assert (config.max_eval_samples, config.sanity_check, config.dataset_config) == (None, False, "num_terms=2")
    config = _eval_config(LatroConfig, run, EvaluationArguments(model_name_or_path="m", dataset_name="gsm8k"),
                          str(tmp_path))
    assert (config.dataset_name, config.dataset_config) == ("gsm8k", None)


def test_metric_std_is_pooled_over_calls_not_averaged():
    from accelerate import Accelerator

    from implicit_reasoning.trainer.core.metrics import MetricBuffer

    buffer = MetricBuffer()
    first, second = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 30.0])
    buffer.add_std("advantage_std", first)
    buffer.add_std("advantage_std", second)
    buffer.add("reward", torch.tensor([1.0, 3.0]))
    buffer.add("reward", 5.0)
    logged = buffer.means(Accelerator(cpu=True))
    assert logged["advantage_std"] == pytest.approx(float(torch.cat([first, second]).std()))
    assert logged["reward"] == pytest.approx(3.5)  # the mean of the two calls' values (2 and 5)
    assert not buffer


def test_resume_from_checkpoint_true_as_the_cli_passes_it(tmp_path, tiny_llama, demo_tokenizer, addition_dataset):
    args = latro_args(tmp_path, save_strategy="steps", save_steps=2)
    LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer).train()
    resumed = LatroTrainer(tiny_llama, latro_args(tmp_path, max_steps=3), train_dataset=addition_dataset,
                           processing_class=demo_tokenizer)
    resumed.train(resume_from_checkpoint="True")
    assert [h["step"] for h in resumed.state.log_history if "loss" in h] == [1, 2, 3]
    empty = LatroTrainer(tiny_llama, latro_args(tmp_path / "none"), train_dataset=addition_dataset,
                         processing_class=demo_tokenizer)
    with pytest.raises(ValueError, match="no checkpoint-\\* directory"):
        empty.train(resume_from_checkpoint=True)


def test_data_seed_orders_the_prompts(tmp_path, tiny_llama, demo_tokenizer, addition_dataset):
    orders = []
    for data_seed in (None, 7):
        trainer = LatroTrainer(tiny_llama, latro_args(tmp_path, data_seed=data_seed), train_dataset=addition_dataset,
                               processing_class=demo_tokenizer)
        sampler = trainer._get_train_sampler()
        orders.append((sampler.seed, list(sampler)))
    assert orders[0][0] == 42 and orders[1][0] == 7 and orders[0][1] != orders[1][1]


def test_evaluating_a_checkpoint_with_no_run_config_needs_a_trainer(tmp_path, tiny_llama, demo_tokenizer):
    from implicit_reasoning.evaluate import EvaluationArguments, run_evaluation

    tiny_llama.save_pretrained(tmp_path)
    demo_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="--trainer is required"):
        run_evaluation(EvaluationArguments(model_name_or_path=str(tmp_path), dataset_name="arithmetic"))


def test_refresh_reference_copies_the_current_policy(tmp_path, tiny_llama, demo_tokenizer, addition_dataset):
    trainer = LatroTrainer(tiny_llama, latro_args(tmp_path, max_steps=1), train_dataset=addition_dataset,
                           processing_class=demo_tokenizer)
    trainer.train()
    policy = dict(trainer.model.named_parameters())
    assert any(not torch.equal(p, policy[n]) for n, p in trainer.ref_model.named_parameters())
    trainer.refresh_reference()
    assert all(torch.equal(p, policy[n]) for n, p in trainer.ref_model.named_parameters())
    assert all(not p.requires_grad for p in trainer.ref_model.parameters())


def test_refresh_reference_with_lora_says_why_it_cannot(tmp_path, tiny_llama, demo_tokenizer, addition_dataset):
    tiny_llama.save_pretrained(tmp_path / "base")
    args = latro_args(tmp_path, use_lora=True, lora_r=4, model_name_or_path=str(tmp_path / "base"))
    trainer = LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer)
    with pytest.raises(NotImplementedError, match="adapter-disabled base"):
        trainer.refresh_reference()


def test_training_a_bf16_model_in_full_warns_about_lost_updates(tmp_path, tiny_llama, demo_tokenizer,
                                                                 addition_dataset):
    with pytest.warns(UserWarning, match="trainable weights are torch.bfloat16"):
        LatroTrainer(tiny_llama.to(torch.bfloat16), latro_args(tmp_path), train_dataset=addition_dataset,
                     processing_class=demo_tokenizer)
