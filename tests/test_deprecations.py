"""No deprecated library API is called from our own code (transformers renames arguments between releases: 5.25
warns that `past_key_values=` goes in 5.40, so a call that only warns today is a TypeError there).

`our_deprecated_calls()` collects every deprecation notice raised while a block runs, in both forms libraries use:
a `FutureWarning` / `DeprecationWarning` through `warnings`, and a logged warning that says "deprecated" (transformers'
`logger.warning_once`). A notice counts as OURS when the frame that called into the warning library (skipping that
library's own frames and the module-call plumbing of torch / peft / accelerate in between) is in `implicit_reasoning`:
a deprecation that transformers raises for peft's own calls is not ours to fix, and is not reported.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import implicit_reasoning
from implicit_reasoning.generation.sampling import generate, sampling_config
from implicit_reasoning.objectives.advantages import kept_lengths
from implicit_reasoning.scoring.packing import pack_rows
from implicit_reasoning.scoring.scored_generation import generate_scored
from implicit_reasoning.scoring.window import score_rows, window_logprobs

OURS = Path(implicit_reasoning.__file__).resolve().parent
LIBRARIES = ("transformers", "torch", "peft", "accelerate", "trl", "deepspeed")
# frames that only pass a call on (a module's __call__, peft / accelerate forward wrappers): skipped to find the caller
PLUMBING = ("torch/nn/modules/module.py", "torch/utils/_contextlib.py", "peft/peft_model.py",
            "peft/tuners/tuners_utils.py", "accelerate/hooks.py", "accelerate/utils/operations.py", "/contextlib.py",
            "/functools.py", "/logging/__init__.py", "/warnings.py")


def _library(filename: str) -> str | None:
    parts = Path(filename).parts
    return next((name for name in LIBRARIES if name in parts and "site-packages" in parts), None)


def _caller_is_ours(frame) -> bool:
    """Walk out from the frame that raised the notice: skip the raising library's frames and call plumbing; the first
    other frame made the deprecated call."""
    emitter = None
    while frame is not None:
        name = frame.f_code.co_filename
        if emitter is None:
            emitter = _library(name)
        elif _library(name) != emitter and not any(part in name.replace("\\", "/") for part in PLUMBING):
            return OURS in Path(name).resolve().parents
        frame = frame.f_back
    return False


@contextmanager
def our_deprecated_calls():
    """Yields a list that fills with the deprecation notices our code triggers inside the block."""
    import inspect

    from transformers.utils import logging as hf_logging

    found: list[str] = []

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (FutureWarning, DeprecationWarning)) and _caller_is_ours(inspect.currentframe()):
            found.append(f"{category.__name__}: {message}")

    class Handler(logging.Handler):
        def emit(self, record):
            if "deprecat" in record.getMessage().lower() and _caller_is_ours(inspect.currentframe()):
                found.append(f"log: {record.getMessage()}")

    handler = Handler(level=logging.WARNING)
    library_logger = hf_logging.get_logger("transformers")
    logging.Logger.warning_once.cache_clear()  # a notice already logged once in this process would be skipped
    library_logger.addHandler(handler)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        try:
            yield found
        finally:
            library_logger.removeHandler(handler)


# --------------------------------------------------------------------------------------------------- the guard
def test_the_guard_reports_our_deprecated_call_and_not_a_librarys():
    from transformers.utils.deprecation import deprecate_kwarg

    class Model(torch.nn.Module):
        @deprecate_kwarg("old", "99.0.0", new_name="new")
        def forward(self, x, new=None):
            return x

    with our_deprecated_calls() as found:
        Model()(torch.zeros(1), old=1)  # the test module is not ours: not reported
    assert found == []

    import implicit_reasoning.generation.sampling as ours

    with our_deprecated_calls() as found:
        exec(compile("model(x, old=1)", ours.__file__, "exec"), {"model": Model(), "x": torch.zeros(1)})
    assert len(found) == 1 and "`old` is deprecated" in found[0]


# --------------------------------------------------------------------------------------------------- our paths
VOCAB, PAD, EOS = 40, 0, 1
PROMPTS = [[5, 6, 7], [5, 6, 7], [8], [8], [9, 10, 11, 12, 13], [9, 10, 11, 12, 13]]
ANSWERS = [[20, 21], [22], [23, 24, 25], [26], [27, 28], [30]]


@pytest.fixture
def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                        pad_token_id=PAD, eos_token_id=EOS)).eval()


@pytest.fixture
def share_any_saving(monkeypatch):
    from implicit_reasoning.runtime import kv_cache

    monkeypatch.setattr(kv_cache, "MIN_SAVED_TOKENS", 1)  # these prompts are short: share them anyway


@pytest.mark.parametrize("shared", [False, True])
def test_generation_scoring_from_generation_and_scoring_call_nothing_deprecated(llama, share_any_saving, shared):
    config = sampling_config(6, PAD, [EOS])
    with our_deprecated_calls() as found:
        generate(llama, PROMPTS, config, 4, shared_prefill=shared)
        out = generate_scored(llama, PROMPTS, config, 4, (), ANSWERS, lambda t: kept_lengths(t, [EOS], []),
                              shared_prefill=shared)
        rows = pack_rows([PROMPTS, out.tokens.tolist(), ANSWERS], PAD, align=1)
        score_rows(llama, rows, (2, 3), 4, shared_prefill=shared)
        window_logprobs(llama, rows, rows["segment_ids"] >= 2, shared_prefill=shared)[0].sum().backward()
    assert out.failure is None
    assert found == []


def test_one_update_of_each_rollout_trainer_calls_nothing_deprecated(tmp_path, demo_tokenizer, addition_dataset,
                                                                    share_any_saving):
    """Generation with one prefill per prompt, scoring from generation, the reference / critic / value passes and the
    grad pass of LaTRO, Markovian and PPO."""
    from test_latro_trainer import latro_args
    from test_markovian_trainer import make_trainer
    from test_ppo_trainer import _config, _trainer

    from implicit_reasoning.data.registry import load_markovian_examples
    from implicit_reasoning.demo import build_demo_model
    from implicit_reasoning.trainer import LatroTrainer

    latro = LatroTrainer(build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2),
                         latro_args(tmp_path / "latro", max_steps=1, rloo_k=2, per_device_train_batch_size=4,
                                    gradient_accumulation_steps=1, rollout_batch_size=4),
                         train_dataset=addition_dataset, processing_class=demo_tokenizer)
    markovian_data = (load_markovian_examples("arithmetic", "train", demo_tokenizer,
                                              dataset_config="num_terms=3,max_value=20,num_examples=8"), None)
    markovian = make_trainer(demo_tokenizer, markovian_data, tmp_path / "markovian", max_steps=1)
    ppo = _trainer(_config(tmp_path / "ppo", max_steps=1), demo_tokenizer)
    for trainer in (latro, markovian, ppo):
        with our_deprecated_calls() as found:
            trainer.train()
        assert found == [], type(trainer).__name__
