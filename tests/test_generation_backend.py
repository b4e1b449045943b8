"""`generation_backend`: the same samples whatever the backend ("hf", "hf_compiled"); "vllm" without vLLM.

vLLM needs CUDA and is not installed here: its parameter mapping, stop handling, missing-package
errors and weight-push logic are tested with a fake engine.
"""

import copy
import math
import sys
from types import SimpleNamespace

import pytest
import torch

from implicit_reasoning.generation import sampling as generation
from implicit_reasoning.generation.sampling import GENERATION_BACKENDS, generate, sampling_config, use_backend
from implicit_reasoning.generation.vllm_backend import (
    VLLMGenerator,
    named_weights_for_vllm,
    pad_rows,
    require_vllm,
    sampling_params_kwargs,
)
from implicit_reasoning.trainer import LatroConfig, LatroTrainer

HF_BACKENDS = ("hf", "hf_compiled")
PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12], [13, 14], [20, 21, 22, 23], [30]]


@pytest.fixture(scope="module")
def peaked_llama():
    """A tiny Llama whose next-token distributions are peaked (a few tokens hold most of the mass)."""
    from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer

    tokenizer = build_demo_tokenizer()
    model = build_demo_model(tokenizer, hidden_size=32, intermediate_size=64, num_heads=2, num_layers=2)
    model.config.tie_word_embeddings = False
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() * 10)
    return model.eval(), tokenizer


def _chi2_threshold(df: int, z: float = 3.09) -> float:
    """Upper 0.1% point of chi-square(df) (Wilson-Hilferty)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def _chi2(pairs: torch.Tensor, joint: torch.Tensor) -> tuple[float, int]:
    """Chi-square of the sampled (t1, t2) pairs against the exact joint: cells expected >= 5 on their own,
    the rest pooled into one cell."""
    n = len(pairs)
    counts = torch.zeros_like(joint).index_put_((pairs[:, 0], pairs[:, 1]), torch.ones(n, dtype=joint.dtype),
                                                accumulate=True)
    expected = joint * n
    big = expected >= 5
    observed = torch.cat([counts[big], counts[~big].sum().view(1)])
    expect = torch.cat([expected[big], expected[~big].sum().view(1)])
    return float(((observed - expect) ** 2 / expect).sum()), int(big.sum())  # df = cells - 1 = big


@torch.no_grad()
def _exact_joint(model, prompt: list[int], temperature: float = 1.0) -> torch.Tensor:
    """p(t1, t2 | prompt) = softmax(logits / T) of step 1 x that of step 2 given t1, for every t1."""
    vocab = model.config.vocab_size
    p1 = torch.softmax(model(torch.tensor([prompt])).logits[0, -1].double() / temperature, -1)
    both = torch.cat([torch.tensor([prompt] * vocab), torch.arange(vocab)[:, None]], dim=1)
    p2 = torch.softmax(model(both).logits[:, -1].double() / temperature, -1)
    return p1[:, None] * p2


def test_the_choices_are_validated_up_front(tmp_path):
    with pytest.raises(ValueError, match=r"generation_backend='fast'.*'hf', 'hf_compiled', 'vllm'"):
        LatroConfig(output_dir=str(tmp_path), generation_backend="fast", report_to=[])
    assert LatroConfig(output_dir=str(tmp_path), report_to=[]).generation_backend == "hf"
    with pytest.raises(ValueError, match="generation_backend"):
        generate(None, PROMPTS, sampling_config(2, 0, None), 4, backend="fast")
    with pytest.raises(ValueError, match="vllm_gpu_memory_utilization"):
        LatroConfig(output_dir=str(tmp_path), vllm_gpu_memory_utilization=0.0, report_to=[])
    assert GENERATION_BACKENDS == ("hf", "hf_compiled", "vllm")


def test_greedy_outputs_and_stops_are_identical_across_backends(peaked_llama):
    model, tokenizer = peaked_llama
    pad = tokenizer.pad_token_id
    free = sampling_config(10, pad, None, greedy=True)
    outs = {b: generate(model, PROMPTS, free, 3, backend=b) for b in HF_BACKENDS}  # chunks of 3 and 2 rows
    assert torch.equal(outs["hf"], outs["hf_compiled"])
    plain = outs["hf"]
    assert (plain != pad).all()  # nothing stops without an end-of-text id
    # an end-of-text id and a 2-token stop sequence taken from the greedy texts: rows stop where they occur
    eos, stop = int(plain[0, 3]), plain[1, 4:6].tolist()
    config = sampling_config(10, pad, [eos], greedy=True)
    stopped = {b: generate(model, PROMPTS, config, 3, stop_seqs=[stop], backend=b) for b in HF_BACKENDS}
    assert torch.equal(stopped["hf"], stopped["hf_compiled"])
    ends = []
    for row in plain.tolist():  # the first eos (kept) or the end of the first stop sequence (kept), else 10
        cut = next((i + 1 for i, t in enumerate(row) if t == eos), 10)
        seq = next((j for j in range(2, 11) if row[j - 2 : j] == stop), 10)
        ends.append(min(cut, seq))
    expected = torch.full_like(plain, pad)
    for i, end in enumerate(ends):
        expected[i, :end] = plain[i, :end]
    assert torch.equal(stopped["hf"], expected)  # right-padded with pad after the stop
    assert ends[0] <= 4 and ends[1] <= 6
    # vLLM's engine stops at the eos itself; its stop sequences are cut afterwards: the same rows
    eos_cut = [row[: next((i + 1 for i, t in enumerate(row) if t == eos), 10)] for row in plain.tolist()]
    assert torch.equal(pad_rows(eos_cut, 10, pad, [stop]), expected)


def test_sampled_tokens_follow_the_models_softmax_with_both_backends(peaked_llama):
    """The joint law of the first two sampled tokens (the second from the compiled decoding step) at T=1."""
    model, tokenizer = peaked_llama
    prompt = [5, 6, 7]
    joint = _exact_joint(model, prompt)
    config = sampling_config(2, tokenizer.pad_token_id, None, temperature=1.0)
    for backend in HF_BACKENDS:
        torch.manual_seed(0)
        pairs = generate(model, [prompt] * 3000, config, 1000, backend=backend)
        stat, df = _chi2(pairs, joint)
        assert df >= 10, df  # peaked enough for the test to see the shape of the distribution
        assert stat < _chi2_threshold(df), (backend, stat, df)
        # the test has power: the same samples are far from the law at temperature 0.5
        cold_stat, cold_df = _chi2(pairs, _exact_joint(model, prompt, temperature=0.5))
        assert cold_stat > 10 * _chi2_threshold(cold_df)


def test_a_trainer_samples_and_evaluates_with_its_backend(tmp_path, tiny_llama, demo_tokenizer, addition_dataset,
                                                          monkeypatch):
    calls = []
    original = generation.compiled_generation_config
    monkeypatch.setattr(generation, "compiled_generation_config", lambda *a: calls.append(1) or original(*a))
    args = LatroConfig(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, max_steps=1,
                       response_length=6, rollout_batch_size=8, learning_rate=1e-2, logging_steps=1,
                       save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
                       per_device_eval_batch_size=4, max_eval_samples=4, eval_max_new_tokens=6,
                       generation_backend="hf_compiled")
    trainer = LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, eval_dataset=addition_dataset,
                           processing_class=demo_tokenizer)
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert calls, "rollouts did not run on hf_compiled"
    during_training = len(calls)
    trainer.evaluate()
    assert len(calls) > during_training  # evaluation (a `generate` that names no backend) ran on it too


# ------------------------------------------------------------------------------------------- vLLM
def test_sampling_params_are_exactly_our_settings():
    sampled = sampling_config(7, 0, [2, 9], temperature=0.7, top_p=0.9, top_k=0, min_new_tokens=3)
    assert sampling_params_kwargs(sampled, seed=11) == dict(
        n=1, temperature=0.7, top_p=0.9, top_k=-1, min_p=0.0, repetition_penalty=1.0, presence_penalty=0.0,
        frequency_penalty=0.0, max_tokens=7, min_tokens=3, stop_token_ids=[2, 9], ignore_eos=True, seed=11,
        detokenize=False, skip_special_tokens=False,
    )
    assert sampling_params_kwargs(sampling_config(4, 0, [2], top_k=5))["top_k"] == 5
    greedy = sampling_params_kwargs(sampling_config(4, 0, None, greedy=True))
    assert (greedy["temperature"], greedy["top_k"], greedy["top_p"], greedy["stop_token_ids"]) == (0.0, -1, 1.0, [])
    warped = sampling_config(4, 0, [2])
    warped.repetition_penalty = 1.1
    with pytest.raises(ValueError, match="repetition_penalty"):
        sampling_params_kwargs(warped)


def test_vllm_absent_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed
    with pytest.raises(ImportError, match=r"generation_backend='vllm'.*pip install 'implicit_reasoning\[vllm\]'"):
        require_vllm()
    with pytest.raises(ValueError, match=r"generation_backend='vllm'.*pip install 'implicit_reasoning\[vllm\]'"):
        LatroConfig(output_dir=str(tmp_path), generation_backend="vllm", report_to=[])
    with pytest.raises(ImportError, match="implicit_reasoning"):  # an engine built without vLLM
        _ = VLLMGenerator("some/model").llm
    with pytest.raises(ValueError, match="generation_backend='vllm'"):  # the name alone is not an engine
        generate(None, PROMPTS, sampling_config(2, 0, None), 4, backend="vllm")


class FakeLLM:
    """`vllm.LLM` as VLLMGenerator uses it: load_weights through the driver worker, generate, reset_prefix_cache."""

    def __init__(self, rows):
        self.rows, self.loaded, self.requests, self.resets = rows, [], [], 0
        model = SimpleNamespace(load_weights=lambda weights: self.loaded.extend(n for n, _ in weights))
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(
            driver_worker=SimpleNamespace(model_runner=SimpleNamespace(model=model))))

    def generate(self, prompts, sampling_params, use_tqdm):
        self.requests.append((prompts, sampling_params))
        return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=self.rows[i % len(self.rows)])])
                for i in range(len(prompts))]

    def reset_prefix_cache(self):
        self.resets += 1


def test_vllm_engine_gets_the_weights_once_per_version(tiny_llama, monkeypatch):
    step = [0]
    engine = FakeLLM(rows=[[4, 5, 2], [6, 7, 8, 9, 10]])
    generator = VLLMGenerator("unused", engine=engine, make_params=dict, version=lambda: step[0],
                              is_policy=lambda model: model is tiny_llama)
    config = sampling_config(4, 0, [2], temperature=0.8)
    torch.manual_seed(0)
    out = generate(tiny_llama, [[1, 2], [1, 2], [3]], config, 2, stop_seqs=[[7, 8]], backend=generator)
    # (N, max_new_tokens), right-padded; the second row cut after its stop sequence
    assert out.tolist() == [[4, 5, 2, 0], [6, 7, 8, 0], [4, 5, 2, 0]]
    names = {n for n, _ in tiny_llama.named_parameters()}
    assert set(engine.loaded) == names and generator.pushes == 1 and engine.resets == 1
    prompts, params = engine.requests[0]
    assert prompts == [{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [3]}]
    assert all(p["temperature"] == 0.8 and p["n"] == 1 and p["max_tokens"] == 4 for p in params)
    assert len({p["seed"] for p in params}) == 3  # repeated prompts must not share a seed
    with use_backend(generator):  # the same version: no push
        generate(tiny_llama, [[1]], config, 2)
    assert generator.pushes == 1
    step[0] = 1  # the optimizer stepped
    generate(tiny_llama, [[1]], config, 2, backend=generator)
    assert generator.pushes == 2
    generator.mark_stale()  # weights reset in place (STaR)
    generate(tiny_llama, [[1]], config, 2, backend=generator)
    assert generator.pushes == 3
    # another model (a separate critic) is generated by "hf", and pushes nothing
    critic = copy.deepcopy(tiny_llama)
    with pytest.warns(UserWarning, match="generates with 'hf'"):
        critic_out = generate(critic, [[1, 2]], config, 2, backend=generator)
    assert critic_out.shape == (1, 4) and generator.pushes == 3


def test_lora_weights_are_merged_under_the_base_names(tiny_llama):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    base_weight = tiny_llama.model.layers[0].self_attn.q_proj.base_layer.weight
    before = base_weight.detach().clone()
    pushed = {name: tensor.clone() for name, tensor in named_weights_for_vllm(model)}
    q = "model.layers.0.self_attn.q_proj.weight"
    assert q in pushed and not any("lora_" in n or n.startswith("base_model") for n in pushed)
    assert set(pushed) == {n.replace(".base_layer", "") for n, _ in tiny_llama.named_parameters() if "lora_" not in n}
    assert torch.equal(base_weight, before)  # the model is left untouched, bit for bit
    model.merge_adapter()
    assert not torch.equal(pushed[q], before) and torch.allclose(pushed[q], base_weight, atol=1e-6)  # merged


def test_a_vllm_trainer_samples_through_its_engine_and_pushes_per_step(tmp_path, tiny_llama, demo_tokenizer,
                                                                       addition_dataset):
    args = LatroConfig(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, report_to="none",
                       use_cpu=True, disable_tqdm=True, response_length=4)
    trainer = LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer)
    args.generation_backend = "vllm"  # (validation would refuse it here: vLLM is not installed)
    engine = FakeLLM(rows=[[11, 12, 13, 14, 15]])
    trainer._vllm_generator = VLLMGenerator("unused", engine=engine, make_params=dict,
                                            version=lambda: trainer.state.global_step,
                                            is_policy=lambda model: model is trainer.unwrapped_policy())
    out = trainer.sample([[5, 6], [7]], k=2, max_new_tokens=4)
    assert out.tolist() == [[11, 12, 13, 14]] * 4 and trainer._vllm_generator.pushes == 1
    assert len(engine.requests[0][0]) == 4  # prompt-major, already repeated: n=1 per row
    trainer.sample([[5, 6]], k=2, max_new_tokens=4)
    assert trainer._vllm_generator.pushes == 1  # no optimizer step since
    trainer.state.global_step += 1
    trainer.sample([[5, 6]], k=2, max_new_tokens=4)
    assert trainer._vllm_generator.pushes == 2


def test_the_engine_loads_the_checkpoint_or_a_saved_copy(tmp_path, tiny_llama):
    from implicit_reasoning.generation.vllm_backend import engine_model_path

    assert engine_model_path(tiny_llama, str(tmp_path / "copy")) == str(tmp_path / "copy")  # built in memory
    assert (tmp_path / "copy" / "config.json").exists()
    tiny_llama.config._name_or_path = "Qwen/Qwen2.5-0.5B-Instruct"
    assert engine_model_path(tiny_llama, str(tmp_path / "unused")) == "Qwen/Qwen2.5-0.5B-Instruct"


def test_the_trainers_engine_gets_its_dtype_context_length_and_memory_share(tmp_path, tiny_llama, demo_tokenizer,
                                                                            addition_dataset, monkeypatch):
    """trainer_generator hands vllm_max_model_length, vllm_gpu_memory_utilization and torch_dtype to vllm.LLM."""
    from implicit_reasoning.generation import vllm_backend

    built = {}
    fake_vllm = SimpleNamespace(LLM=lambda **kwargs: built.update(kwargs) or FakeLLM(rows=[[1]]))
    monkeypatch.setattr(vllm_backend, "require_vllm", lambda: fake_vllm)
    args = LatroConfig(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, report_to="none",
                       use_cpu=True, disable_tqdm=True, response_length=4, vllm_gpu_memory_utilization=0.45,
                       torch_dtype="bfloat16")
    trainer = LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer)
    args.generation_backend, args.vllm_max_model_length = "vllm", 1536  # (validation would refuse vllm here)
    _ = vllm_backend.trainer_generator(trainer).llm
    assert built["max_model_len"] == 1536 and built["gpu_memory_utilization"] == 0.45
    assert built["dtype"] == "bfloat16" and built["generation_config"] == "vllm"
    with pytest.raises(ValueError, match="vllm_max_model_length=0"):
        LatroConfig(output_dir=str(tmp_path), vllm_max_model_length=0, report_to=[])
    with pytest.raises(ValueError, match="vllm_max_model_length=1536 with generation_backend='hf'"):
        LatroConfig(output_dir=str(tmp_path), vllm_max_model_length=1536, report_to=[])  # no effect: refused
