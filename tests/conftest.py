"""Shared fixtures: tiny models built from a config and tokenizers built offline."""

import datasets
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from implicit_reasoning.demo import build_demo_tokenizer

torch.set_num_threads(1)  # tiny models: overhead-bound, and robust on a shared machine


# modules that launch processes (torchrun, DeepSpeed, a wheel's venv, the scripts) or load the real model: left out
# of the quick loop (`-m fast`), run by CI with everything else
HEAVY_MODULES = {"test_distributed", "test_real_model", "test_packaging", "test_scripts", "test_checkpoint_crash",
                 "test_compare_methods", "test_gpu", "test_demo_warm_start"}


# single tests over ~6 s in a `-m fast` run (--durations; subprocesses, two-process runs, memory probes): left out
# of the quick loop too
SLOW_FOR_THE_QUICK_LOOP = {
    "test_benchmark::test_smoke_run_against_trl_writes_every_key", "test_configs::test_cpu_config_real_launch",
    "test_configs::test_deepspeed_config_survives_accelerate_launch",
    "test_configs::test_ds_json_accepted_after_trainer_fills_auto",
    "test_core::test_a_markovian_checkpoint_from_the_python_api_evaluates_as_markovian",
    "test_core::test_saved_adapter_records_a_loadable_base_and_evaluates",
    "test_demo::test_tokenizer_is_deterministic_across_processes", "test_docstrings::test_every_example_runs",
    "test_fragility::test_script_is_a_thin_wrapper_over_the_package",
    "test_generation_backend::test_greedy_outputs_and_stops_are_identical_across_backends",
    "test_head_terms::test_grad_pass_with_kl_stays_under_a_quarter_of_the_full_logits",
    "test_lm_head::test_chunked_head_memory_stays_under_a_quarter_of_the_full_logits",
    "test_old_paths::test_a_saved_runs_training_args_from_before_the_move_loads_in_a_fresh_process",
    "test_output_dir::test_a_resume_after_a_sigkill_continues_samples_and_logs_as_the_uninterrupted_run",
    "test_output_dir::test_the_first_log_after_a_resume_between_two_logs_is_the_uninterrupted_runs",
    "test_plot_metrics::test_cli",
    "test_ppo_trainer::test_evaluation_reports_validation_loss_accuracy_and_writes_test_generations",
    "test_ppo_trainer::test_seed_sets_the_value_head_and_a_fresh_rollout_after_an_early_stop_has_new_prompts",
    "test_ppo_trainer::test_two_processes_agree_on_weights_kl_coefficient_and_curriculum",
    "test_resume::test_a_resumed_run_logs_and_ends_like_the_uninterrupted_run",
    "test_review_ppo_star::test_two_processes_log_the_rollout_value_statistics_over_all_tokens",
    "test_secrets::test_no_secret_in_outputs_configs_logs_wandb_or_console",
    "test_star_update::test_two_processes_with_accumulation_give_the_one_process_update",
}


def pytest_configure(config):
    # CI runs these too; `-m "not slow"` leaves them out of a quick local run
    config.addinivalue_line("markers", "slow: takes over a minute (e.g. subprocess crash-and-resume runs)")
    config.addinivalue_line("markers", "demo(name): the test reads `demo_results[name]` (a shipped demo's run)")
    config.addinivalue_line("markers", "fast: the quick loop (under 5 minutes on 2 cores): every test that is not "
                                       "slow, reads no demo, is not in a HEAVY_MODULES module nor in "
                                       "SLOW_FOR_THE_QUICK_LOOP (set by conftest)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        heavy = module in HEAVY_MODULES or f"{module}::{item.originalname}" in SLOW_FOR_THE_QUICK_LOOP
        if not heavy and not item.get_closest_marker("slow") and "demo_results" not in item.fixturenames:
            item.add_marker(pytest.mark.fast)


def addition_rows(n: int = 24) -> list[dict]:
    """A user's own 3-column data set: queries / responses / groundtruth."""
    rows = []
    for i in range(n):
        a, b = i % 7 + 1, i % 5 + 2
        rows.append(
            {
                "queries": f"Question: {a} + {b}\nLet's think step by step.\n",
                "responses": f" The answer is {a + b}.",
                "groundtruth": str(a + b),
            }
        )
    return rows


@pytest.fixture(scope="session")
def demo_tokenizer():
    return build_demo_tokenizer()


@pytest.fixture
def tiny_llama(demo_tokenizer):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(demo_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=demo_tokenizer.pad_token_id,
        eos_token_id=demo_tokenizer.eos_token_id,
        bos_token_id=demo_tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(config)


@pytest.fixture
def one_thread():
    """torch on one thread for the test (timings and float sums that do not depend on the machine's cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def addition_dataset():
    return datasets.Dataset.from_list(addition_rows())


@pytest.fixture
def word_tokenizer():
    """A user's own word-level tokenizer with NO pad token (the trainer must choose one)."""
    words = ["[UNK]", "[EOS]", "Question:", "Let's", "think", "step", "by", "step.", "The", "answer", "is", "+", "="]
    words += [str(i) for i in range(40)] + [f"{i}." for i in range(40)]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="[EOS]")


@pytest.fixture
def tiny_gpt2(word_tokenizer):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(word_tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128)
    config.eos_token_id = word_tokenizer.eos_token_id
    return GPT2LMHeadModel(config)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny demo-shaped model with its tokenizer (a model dir as the scripts load it)."""
    from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer

    path = tmp_path_factory.mktemp("tiny")
    tokenizer = build_demo_tokenizer(str(path))
    build_demo_model(tokenizer, hidden_size=32, intermediate_size=64, num_heads=2).save_pretrained(path)
    return path


def free_port() -> int:
    """A TCP port nobody listens on now (for torchrun's rendezvous; tests may run side by side)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(script, *args, nproc: int = 2) -> list[str]:
    """`python -m torch.distributed.run` on this machine with `nproc` processes and a free port."""
    import sys

    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_port", str(free_port()), str(script), *map(str, args)]


RANK_RESULT = '''
def write_rank_result(directory, rank, record):
    """One JSON file per rank: results never depend on how the processes' stdout interleaved."""
    import json, os
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"rank{rank}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(path + ".tmp", path)
'''


def rank_results(directory, nproc: int = 2) -> list[dict]:
    """The records the `nproc` ranks wrote with `write_rank_result` (RANK_RESULT), in rank order."""
    import json
    from pathlib import Path

    files = [Path(directory) / f"rank{rank}.json" for rank in range(nproc)]
    missing = [f.name for f in files if not f.exists()]
    assert not missing, f"no result from {missing} in {directory}"
    return [json.loads(f.read_text()) for f in files]


# ------------------------------------------------------------------ the shipped demos, run in the background
DEMOS = ("latro", "markovian", "star", "star_dpo", "ppo_curriculum", "ppo_text")
_DEMO_RUNS: dict = {}  # demo -> Future of its demo_results.json (or the failed run's stderr)
_DEMO_PROCESSES: list = []


def _run_demo(root, demo):
    """`python scripts/training.py configs/demo_<demo>.yaml` as a user runs it, on a fresh output dir."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = Path(root) / demo
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "WANDB_MODE": "disabled"}
    command = [sys.executable, str(repo / "scripts/training.py"), str(repo / f"configs/demo_{demo}.yaml"),
               "--output_dir", str(out), "--disable_tqdm", "true"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _DEMO_PROCESSES.append(process)
    _, stderr = process.communicate(timeout=2400)
    if process.returncode != 0:
        return f"demo {demo} failed (exit {process.returncode}):\n{stderr[-3000:]}"
    return json.loads((out / "demo_results.json").read_text())


def pytest_collection_finish(session):
    """When a test that needs `demo_results` is selected, start the six shipped demos now, one at a time, in a
    background thread. Each is a one-thread process, so it runs on the core the (one-thread) test process leaves
    idle, and the demos' ~10 CPU-minutes overlap the rest of the suite instead of adding to its wall time."""
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    needed = set()
    for item in session.items:
        if "demo_results" in getattr(item, "fixturenames", ()):  # its `demo` parameter, else its demo marker
            params = getattr(getattr(item, "callspec", None), "params", {})
            needed.add(params["demo"] if "demo" in params else item.get_closest_marker("demo").args[0])
    if _DEMO_RUNS or not needed or session.config.option.collectonly:
        return
    root = tempfile.mkdtemp(prefix="implicit-reasoning-demos-")
    session.config._demo_root = root
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demos")
    for demo in (d for d in DEMOS if d in needed):
        _DEMO_RUNS[demo] = pool.submit(_run_demo, root, demo)
    pool.shutdown(wait=False)


def pytest_sessionfinish(session):
    """An interrupted session leaves no demo running; the demos' output dirs go."""
    import shutil

    for future in _DEMO_RUNS.values():
        future.cancel()
    for process in _DEMO_PROCESSES:
        if process.poll() is None:
            process.kill()
    root = getattr(session.config, "_demo_root", None)
    if root:
        shutil.rmtree(root, ignore_errors=True)


class _DemoResults:
    def __getitem__(self, demo):
        return _DEMO_RUNS[demo].result()  # waits for that demo only


@pytest.fixture(scope="session")
def demo_results():
    """demo -> its demo_results.json, or the failed run's stderr (the runs started at collection: see above)."""
    return _DemoResults()
