"""Multi-process launches that are what they claim, on machines with or without GPUs.

`settle_launch(config)` runs in every `TrainerConfig.__post_init__`, before transformers sets up
the process group:

* a machine with no accelerator that torch can run a process group on (no CUDA, XPU, ...):
  a process started by torchrun / `accelerate launch` with WORLD_SIZE > 1 trains on the CPU over
  gloo. Without this, transformers and accelerate treat every such process as a job of its own
  (`--multi_gpu` without `--use_cpu`), and under DeepSpeed each process believes it is alone
  and DeepSpeed's batch-size check fails (no `--ddp_backend` given);
* `accelerate launch --num_processes N` (N > 1) with a config that accelerate runs as a single
  process (distributed_type NO, e.g. configs/cpu.yaml) is an error that says what to add;
* DeepSpeed on the CPU accelerator does not JIT-compile its shared-memory all-reduce op: only
  DeepSpeed's inference all-reduce (AutoTP) uses it, never ZeRO training, and a run killed while
  compiling it leaves torch's build lock behind, on which every later run waits forever.

`settle_launch` also imports `torch.distributed.nn.functional` (and DeepSpeed's
`deepspeed.comm.torch`, when installed) before any process group exists: each binds the default
group (`group.WORLD`) as a default argument value when first imported, and DDP / accelerate imported
them after the group was created. `destroy_process_group()` then left the gloo group, and its
worker threads, alive until interpreter finalization, where it was torn down with the interpreter
half gone: the rare "terminate called without an active exception" (SIGABRT) of a 2-process run
that had finished. Imported first, they hold None, and the group dies in `destroy_process_group()`.
"""

from __future__ import annotations

import importlib.util
import os

SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
SHM_COMM_OP = "deepspeed_shm_comm"


def launched_processes() -> int:
    """How many processes the launcher started (torchrun's WORLD_SIZE, or MPI's), 1 when not launched."""
    for name in SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def has_accelerator_backend() -> bool:
    """Whether this machine has an accelerator with a distributed backend (CUDA -> nccl, XPU -> xccl, ...)."""
    from accelerate.utils.imports import get_distributed_backend, get_torch_accelerator_backend

    device_type, _ = get_torch_accelerator_backend()
    return get_distributed_backend(device_type) is not None


def deepspeed_requested(config) -> bool:
    """DeepSpeed from the training arguments (`deepspeed=`) or from `accelerate launch` (a DeepSpeed config)."""
    return bool(config.deepspeed) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def check_single_process_launch() -> None:
    """`accelerate launch` asked for several processes but started one: an error, not a silent 1-process run.

    accelerate's simple launcher (distributed_type NO, or no GPU and no `--multi_gpu`) starts ONE
    process and sets MASTER_ADDR only when `--num_processes` / `--num_machines` is above 1.
    """
    launched_by_accelerate = "ACCELERATE_MIXED_PRECISION" in os.environ
    if launched_by_accelerate and "MASTER_ADDR" in os.environ and launched_processes() == 1 \
            and "LOCAL_RANK" not in os.environ:
        raise RuntimeError(
            "accelerate launch started this script as ONE process although more were asked for "
            "(--num_processes > 1): a config with distributed_type NO (such as configs/cpu.yaml) runs a single "
            "process. Add --multi_gpu to `accelerate launch` (on a machine without GPUs the processes then train on "
            "the CPU over gloo), or launch with `torchrun --nproc_per_node N`. (If MASTER_ADDR is exported in your "
            "shell for a one-process run, unset it.)"
        )


def skip_deepspeed_cpu_jit() -> None:
    """On DeepSpeed's CPU accelerator, mark its shared-memory all-reduce op as unavailable (no JIT build).

    DeepSpeed builds it when its process group starts and uses it only for its inference all-reduce;
    ZeRO's collectives go through torch.distributed (gloo) either way.
    """
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() == "cpu":
        deepspeed.ops.__compatible_ops__[SHM_COMM_OP] = False


def bind_default_groups_early(deepspeed: bool) -> None:
    """Import the modules that bind the default process group at import while none exists (module docstring).

    DeepSpeed's import logs a notice about its CPU accelerator; in a run without DeepSpeed it is dropped."""
    import torch.distributed as dist
    import torch.distributed.nn.functional  # noqa: F401

    if importlib.util.find_spec("deepspeed") is None or (dist.is_available() and dist.is_initialized()):
        return
    from .quiet import deepspeed_notice_dropped

    with deepspeed_notice_dropped(not deepspeed):
        import deepspeed.comm.torch  # noqa: F401  (TorchBackend.barrier's default group)


def settle_launch(config) -> None:
    """Adjust `config` (a TrainingArguments) to the launch this process is part of; see the module docstring."""
    check_single_process_launch()
    deepspeed = deepspeed_requested(config)
    bind_default_groups_early(deepspeed)
    if deepspeed:
        skip_deepspeed_cpu_jit()
    if launched_processes() == 1 or has_accelerator_backend():
        return
    if deepspeed:
        if config.ddp_backend is None:  # DeepSpeed's own pick would be a group accelerate does not see
            config.ddp_backend = "gloo"
    elif not config.use_cpu:
        config.use_cpu = True  # accelerate then starts one gloo group over all the processes
