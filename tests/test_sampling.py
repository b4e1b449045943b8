"""Sampling is exactly what the config says, whatever the model's own generation_config holds."""

import pytest
import torch
from transformers import GenerationConfig

from implicit_reasoning.evaluation.accuracy import eval_generation_config
from implicit_reasoning.generation.sampling import generate, sampling_config
from implicit_reasoning.trainer import LatroConfig, LatroTrainer, MarkovianConfig, MarkovianTrainer

PROMPT = [[5, 6, 7]]


def _trainer(tmp_path, model, tokenizer, dataset, **overrides):
    values = dict(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, report_to="none",
                  use_cpu=True, rollout_batch_size=4096, disable_tqdm=True, response_length=1)
    values.update(overrides)
    return LatroTrainer(model, LatroConfig(**values), train_dataset=dataset, processing_class=tokenizer)


def _one_token_samples(trainer, n=3000, seed=0):
    torch.manual_seed(seed)
    return trainer.sample(PROMPT, n, max_new_tokens=1)[:, 0]


def _shipping_defaults(model):
    """What a real checkpoint's generation_config.json carries (Qwen2.5-Instruct ships top_k=20 and
    repetition_penalty=1.05), pushed further so that any leak is unmistakable."""
    model.generation_config.top_k = 3
    model.generation_config.top_p = 0.5
    model.generation_config.repetition_penalty = 10.0
    model.generation_config.no_repeat_ngram_size = 1
    model.generation_config.min_p = 0.5
    model.generation_config.temperature = 0.1
    model.generation_config.do_sample = False


def test_top_k_0_samples_the_whole_vocabulary(tmp_path, tiny_llama, demo_tokenizer, addition_dataset):
    trainer = _trainer(tmp_path, tiny_llama, demo_tokenizer, addition_dataset)
    tokens = _one_token_samples(trainer)
    # a random tiny model is close to uniform over ~600 tokens: 3000 draws reach most of them
    # (transformers' own default would have been top-50)
    assert len(set(tokens.tolist())) > 400


def test_the_models_generation_config_changes_nothing(tmp_path, tiny_llama, demo_tokenizer, addition_dataset):
    trainer = _trainer(tmp_path, tiny_llama, demo_tokenizer, addition_dataset)
    clean = _one_token_samples(trainer)
    _shipping_defaults(tiny_llama)
    warped = _one_token_samples(trainer)
    assert torch.equal(clean, warped)  # the same draws, token for token
    assert len(set(warped.tolist())) > 400
    assert tiny_llama.generation_config.top_k == 3  # the model's own config is left as it was


def test_configured_top_k_and_temperature_are_applied(tmp_path, tiny_llama, demo_tokenizer, addition_dataset):
    trainer = _trainer(tmp_path, tiny_llama, demo_tokenizer, addition_dataset, top_k=5, temperature=0.3)
    assert len(set(_one_token_samples(trainer).tolist())) <= 5
    config = sampling_config(4, 0, [2], temperature=0.3, top_p=0.9, top_k=5)
    assert (config.temperature, config.top_p, config.top_k, config.do_sample) == (0.3, 0.9, 5, True)


def test_greedy_generation_ignores_the_models_penalties(tiny_llama, demo_tokenizer):
    config = sampling_config(12, demo_tokenizer.pad_token_id, None, greedy=True)
    tiny_llama.eval()
    clean = generate(tiny_llama, PROMPT, config, batch_size=1)
    _shipping_defaults(tiny_llama)
    assert torch.equal(generate(tiny_llama, PROMPT, config, batch_size=1), clean)
    # what transformers would have done with the model's config: repetition banned, a different text
    with torch.no_grad():
        plain = tiny_llama.generate(input_ids=torch.tensor(PROMPT), max_new_tokens=12,
                                    pad_token_id=demo_tokenizer.pad_token_id)[:, 3:]
    assert not torch.equal(plain, clean[:, : plain.shape[1]])


def test_eval_and_markovian_critic_baseline_use_the_same_exact_configs(tmp_path, demo_tokenizer, addition_dataset):
    latro = LatroConfig(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, temperature=0.7,
                        top_p=0.8, top_k=0, eval_num_samples=4, report_to="none")
    greedy, sampled = (eval_generation_config(latro, demo_tokenizer, sample) for sample in (False, True))
    assert not greedy.do_sample and greedy.repetition_penalty == 1.0 and greedy.no_repeat_ngram_size == 0
    assert sampled.do_sample and (sampled.temperature, sampled.top_p, sampled.top_k) == (0.7, 0.8, 0)
    assert isinstance(greedy, GenerationConfig)


def test_markovian_critic_baseline_is_greedy_under_any_model_config(tmp_path, demo_tokenizer):
    from implicit_reasoning.demo import build_demo_model

    values = dict(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, report_to=[], use_cpu=True,
                  cot_length=6)
    prompts = [[5, 6, 7], [8, 9]]
    cots = []
    for shipped in (False, True):
        model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
        if shipped:
            _shipping_defaults(model)
        trainer = MarkovianTrainer(model, MarkovianConfig(**values), processing_class=demo_tokenizer)
        with trainer.reference_model() as critic:
            cots.append(trainer._generate_cots(critic, prompts, greedy=True))
    assert cots[0] == cots[1] and all(len(c) == 6 for c in cots[0])


@pytest.mark.parametrize("greedy", [True, False])
def test_greedy_configs_carry_no_sampling_only_settings(greedy):
    """transformers warns that sampling-only settings are ignored in greedy mode: leave them unset there."""
    config = sampling_config(2, 0, [2], greedy=greedy)
    assert (config.top_k is None, config.top_p is None, config.temperature is None) == (greedy,) * 3
    assert config.repetition_penalty == 1.0  # processors apply in greedy mode too: always neutral


def test_the_models_end_of_turn_ids_end_rollouts_and_eval_completions(tmp_path, tiny_llama, demo_tokenizer,
                                                                       addition_dataset):
    """Chat checkpoints list end-of-turn ids (<|eot_id|>, <|end|>) only in generation_config.eos_token_id."""
    from implicit_reasoning.evaluation.accuracy import evaluate_dataset

    end_of_turn = 7

    def push(module, inputs, output):  # the model always wants to end its turn
        output = output.clone()
        output[..., end_of_turn] += 100.0
        return output

    tiny_llama.lm_head.register_forward_hook(push)
    tiny_llama.generation_config.eos_token_id = [demo_tokenizer.eos_token_id, end_of_turn]
    trainer = _trainer(tmp_path, tiny_llama, demo_tokenizer, addition_dataset, response_length=6)
    assert end_of_turn in trainer.stop_ids
    rollout = trainer.make_rollout({k: addition_dataset[k][:2] for k in addition_dataset.column_names})
    answers_start = (rollout["segment_ids"] == 2).sum(dim=1)
    assert answers_start.tolist() == [0] * 4  # every rationale ended at once: the end of turn is a stop
    seen = []
    original = tiny_llama.generate
    tiny_llama.generate = lambda *a, generation_config=None, **k: seen.append(generation_config.eos_token_id) or \
        original(*a, generation_config=generation_config, **k)
    evaluate_dataset(tiny_llama, trainer.processing_class, addition_dataset.select(range(2)), "arithmetic",
                     trainer.args)
    assert seen and all(end_of_turn in ids for ids in seen)
