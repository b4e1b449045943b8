"""Notices from other libraries that a user of ours cannot act on, silenced one by one (never a whole category).

* DeepSpeed's "Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to
  detect it." (logged when transformers / accelerate import DeepSpeed to see whether it is there) in a
  run that does not use DeepSpeed: that run's device is torch's, and DeepSpeed's choice plays no part
  (the console commands, `quiet_notices`).
* transformers' "[INFO] Running in WANDB offline mode" (printed when its integrations module is imported,
  which building TrainingArguments does, and WANDB_MODE=offline) in a run whose `report_to` does not
  include wandb (`TrainerConfig.__post_init__` imports them first, quietly).
* torch's "'pin_memory' ... no accelerator is found" UserWarning: `TrainerConfig` turns
  `dataloader_pin_memory` off where there is no accelerator (it has no effect there).
* transformers' FutureWarning that `is_gradient_checkpointing` is deprecated, raised inside trl's
  `unwrap_model_for_generation` (not by our code, nor by the user's): silenced around that call only
  (`BaseTrainer.generation_model`).

A warning about the user's own settings, data or model is never touched (`tests/test_scripts.py` checks
that a truncated-prompt warning still shows).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

DEEPSPEED_CPU_NOTICE = "Setting accelerator to CPU"
UPSTREAM_DEPRECATIONS = (r"`is_gradient_checkpointing` is deprecated",)


class _DropMessage(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.start)


def quiet_notices(config) -> None:
    """The console commands: drop DeepSpeed's CPU notice when the run `config` describes uses no DeepSpeed
    (call it before the trainers are imported)."""
    if not getattr(config, "deepspeed", None):
        logger = logging.getLogger("DeepSpeed")
        if not any(isinstance(f, _DropMessage) for f in logger.filters):
            logger.addFilter(_DropMessage(DEEPSPEED_CPU_NOTICE))


@contextlib.contextmanager
def deepspeed_notice_dropped(drop: bool = True):
    """The block without DeepSpeed's CPU-accelerator notice (when `drop`): importing DeepSpeed logs it."""
    logger = logging.getLogger("DeepSpeed")
    notice = _DropMessage(DEEPSPEED_CPU_NOTICE)
    if drop:
        logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


def import_integrations_quietly(report_to) -> None:
    """TrainingArguments imports transformers' integrations while it is built; with WANDB_MODE=offline that prints
    a wandb line. Import them first, without that line, when `report_to` has no wandb."""
    names = report_to if isinstance(report_to, (list, tuple)) else [report_to]
    if os.environ.get("WANDB_MODE") == "offline" and "wandb" not in names and "all" not in names:
        with contextlib.redirect_stdout(io.StringIO()):  # its only output at import is that line
            import transformers.integrations.integration_utils  # noqa: F401


@contextlib.contextmanager
def upstream_deprecations():
    """The block without the deprecation warnings that other libraries raise from their own calls (trl's
    `unwrap_model_for_generation` reading `is_gradient_checkpointing`)."""
    with warnings.catch_warnings():
        for message in UPSTREAM_DEPRECATIONS:
            warnings.filterwarnings("ignore", message=message, category=FutureWarning)
        yield
