"""KV-cache plumbing shared by generation and scoring.

* The cache's name: transformers 5.25 renamed a model's ``past_key_values=`` argument and its
  outputs' ``.past_key_values`` to ``cache`` (the old name warns, and goes in 5.40); older
  releases know only the old one. :func:`cache_argument` and :func:`output_cache` pick whichever
  the installed model has, so no call of ours goes through a deprecated name.
"""

from __future__ import annotations

import inspect

from .model_utils import innermost_model

NEW_NAME, OLD_NAME = "cache", "past_key_values"


def cache_argument(model) -> str:
    """The keyword under which ``model`` (the transformers model under any peft / DDP wrapper) takes a KV cache."""
    return NEW_NAME if NEW_NAME in inspect.signature(innermost_model(model).forward).parameters else OLD_NAME


def output_cache(output):
    """The KV cache of a model's or `generate`'s output, under the name the installed transformers gives it."""
    fields = getattr(output, "__dataclass_fields__", None) or {}
    return getattr(output, NEW_NAME) if NEW_NAME in fields else getattr(output, OLD_NAME)
