"""Every metric a trainer logs is explained on its docs page (one short run per trainer and variant)."""

import os
import re
from pathlib import Path

import pytest

from implicit_reasoning.data.registry import load_markovian_examples, load_task_dataset
from implicit_reasoning.demo import build_demo_model
from implicit_reasoning.trainer import trainer_class, trainer_entry

DOCS = Path(__file__).resolve().parents[1] / "docs"
HF_KEYS = {"grad_norm", "learning_rate", "epoch", "step", "train_runtime", "train_samples_per_second",
           "train_steps_per_second", "total_flos", "train_loss", "eval_runtime"}
COMMON = dict(max_steps=1, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
              per_device_train_batch_size=4, learning_rate=1e-3, per_device_eval_batch_size=4)

VARIANTS = {
    "latro": ("latro", dict(rloo_k=2, response_length=4, eval_num_samples=2)),
    "markovian-pg": ("markovian", dict(rloo_k=2, cot_length=3, entropy_bonus=0.1)),
    "markovian-ppo": ("markovian", dict(rloo_k=2, cot_length=3, method="ppo", ppo_epochs=1)),
    "markovian-ei-k1": ("markovian", dict(rloo_k=1, cot_length=3, method="ei", ei_warmup=0, ei_std=-1.0,
                                          scorer="actor", actor_reward_weight=0.1)),
    "markovian-vq": ("markovian", dict(rloo_k=1, use_vq=True, vq_reason_length=3)),
    "sft": ("sft", dict(response_length=4)),
    "ppo_curriculum": ("ppo_curriculum", dict(response_length=4, ppo_epochs=2, early_stop_kl=1.0,
                                              reward_funcs=["answer_accuracy", "repetition_penalty",
                                                            "continuation_loglik"])),
    "star-sft": ("star", dict(response_length=12, num_iterations=1, start_steps=1, samples_per_train_question=2,
                              max_steps=-1)),
    "star-dpo": ("star", dict(response_length=12, num_iterations=1, start_steps=1, samples_per_train_question=4,
                              train_strategy="dpo", rpo_alpha=0.5, max_steps=-1)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_logged_metric_is_on_the_trainers_page(variant, tmp_path, demo_tokenizer, monkeypatch):
    name, overrides = VARIANTS[variant]
    if variant == "star-dpo":  # a generator right on every other sample, so that DPO has pairs to log
        from test_star_trainer import answer_generator, solve

        from implicit_reasoning.trainer.star import trainer as star_trainer

        flip = iter(range(10**6))
        monkeypatch.setattr(star_trainer, "generate", answer_generator(
            demo_tokenizer, lambda prompt: solve(prompt) if next(flip) % 2 else "Guess.\nAnswer: 0"))
    config_cls = trainer_entry(name)[1]
    config = config_cls(output_dir=str(tmp_path), dataset_name="arithmetic", max_eval_samples=2,
                        dataset_config="num_terms=2,max_value=5,num_examples=8", **{**COMMON, **overrides})
    if name == "markovian":
        data = load_markovian_examples("arithmetic", "train", demo_tokenizer, dataset_config=config.dataset_config)
    elif name == "ppo_curriculum":  # prompt / continuation / groundtruth rows
        data = trainer_entry(name)[0].load_split(config, "train", demo_tokenizer)
    else:
        keep = {k: v for k, v in config.dataset_kwargs.items() if k != "sanity_check"}
        data = load_task_dataset("arithmetic", "train", demo_tokenizer, **keep)
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    rows = data
    trainer = trainer_class(name, config)(model, config, train_dataset=rows, eval_dataset=data,
                                          processing_class=demo_tokenizer)
    trainer.train()
    trainer.evaluate()
    logged = {key for row in trainer.state.log_history for key in row} - HF_KEYS
    page = (DOCS / f"{name}.md").read_text()
    documented = set(re.findall(r"`([a-z_/]+(?:@k)?)`", page))
    missing = {key for key in logged if key not in documented and re.sub(r"@\d+$", "@k", key) not in documented}
    assert logged and not missing, f"{variant}: logged but not on docs/{name}.md: {sorted(missing)}"
    assert os.path.exists(tmp_path / "samples.jsonl") or name == "sft"
    if variant == "star-dpo":
        assert "rewards/margins" in logged
