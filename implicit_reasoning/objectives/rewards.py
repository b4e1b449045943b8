"""Sequence rewards in TRL's calling convention, and how several of them combine.

A reward function is any callable ``f(prompts, completions, **columns) -> list[float | None]``
(one value per completion; ``None`` = "not applicable to this row"). It is called with
keyword arguments ``prompts`` and ``completions`` (texts), ``completion_ids`` (token lists)
and every column of the rows (``groundtruth``, ``source``, ``continuation``, ...); accept
``**kwargs`` for the ones you do not read. Several functions combine as
``sum_f weight_f * r_f`` over the functions applicable to a row.

Built in (by name in ``reward_funcs``):
    repetition_penalty   -(share of consecutive repeated tokens + share of repeated 3-grams) / 2, in
                         [-1, 0]: -0.75 for 4 copies of one token, -0.992 for 64 (-1 only in the limit)
    answer_accuracy      1 / 0 by the dataset's answer checker (evaluation.checkers); None on raw text; a completion
                         cut off at the budget (``cut_off``) is read only from an answer statement, as evaluation does
    continuation_loglik  the frozen model's mean log-prob per token of the true continuation
                         after prompt + completion (needs a scorer: built by the trainer)
A user function is named as ``"package.module:function"`` (or passed as a callable in Python).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import torch

from ..evaluation.checkers import checker_for, is_correct

REPEATED_NGRAM = 3


def repetition_rate(ids: Sequence[int], n: int = REPEATED_NGRAM) -> float:
    """(share of tokens equal to the previous token + share of n-grams seen earlier in the row) / 2.

    >>> repetition_rate([1, 2, 3, 4])
    0.0
    >>> repetition_rate([1, 2, 1, 2, 1, 2])  # no token equals the one before it; 3-grams 3 and 4 repeat 1 and 2
    0.25
    """
    ids = list(ids)
    consecutive = sum(a == b for a, b in zip(ids, ids[1:])) / max(len(ids) - 1, 1)
    seen, repeated, grams = set(), 0, 0
    for start in range(len(ids) - n + 1):
        gram = tuple(ids[start : start + n])
        repeated += gram in seen
        grams += 1
        seen.add(gram)
    return (consecutive + repeated / max(grams, 1)) / 2


def repetition_penalty(prompts, completions, completion_ids, **kwargs) -> list[float]:
    """-repetition_rate of each completion's tokens, in [-1, 0]: 0 without repetition; one token repeated n >= 3
    times gives -(1 + (n - 3) / (n - 2)) / 2, which tends to -1 as n grows.

    >>> [round(r, 3) for r in repetition_penalty(["p", "p"], ["", ""], [[7] * 4, [7] * 64])]
    [-0.75, -0.992]
    """
    return [-repetition_rate(ids) for ids in completion_ids]


def answer_accuracy(prompts, completions, groundtruth=None, source=None, cut_off=None, **kwargs) -> list[float | None]:
    """1.0 when the completion's answer matches `groundtruth` by the checker of the row's `source` dataset, else 0.0.

    A completion `cut_off` at the token budget (no end-of-text token) counts only through an answer statement
    ("The answer is 7"), never by the checker's fallback (its last number), as in evaluation.

    None for rows without a gold answer (raw-text datasets in a mixture). Gold answers without `source` are an
    error: which checker applies is unknown (PPOCurriculumTrainer fills `source` from `dataset_name`).
    """
    if source is None and groundtruth is not None and any(groundtruth):
        raise ValueError("answer_accuracy needs the rows' `source` (the dataset name whose answer checker applies, "
                         "e.g. 'gsm8k'): pass source=[...] with one name per completion")
    out = []
    for i, completion in enumerate(completions):
        gold = groundtruth[i] if groundtruth is not None else ""
        name = source[i] if source is not None else None
        if not gold or name is None or checker_for(name) == "none":
            out.append(None)
        else:
            out.append(float(is_correct(name, completion, gold, bool(cut_off[i]) if cut_off is not None else False)))
    return out


class ContinuationLogLikelihood:
    """Mean log-prob per token of the row's true `continuation` after prompt + completion, by a frozen scorer.

    `scorer(prompts, completion_ids, continuations) -> (N,) float tensor` is supplied by the trainer
    (one no-grad forward of the frozen reference per chunk). None for rows without a continuation.
    """

    __name__ = "continuation_loglik"

    def __init__(self, scorer: Callable):
        self.scorer = scorer

    def __call__(self, prompts, completions, completion_ids, continuation=None, **kwargs) -> list[float | None]:
        if continuation is None:
            return [None] * len(completions)
        rows = [i for i, text in enumerate(continuation) if text]
        values: list[float | None] = [None] * len(completions)
        if rows:
            scores = self.scorer([prompts[i] for i in rows], [completion_ids[i] for i in rows],
                                 [continuation[i] for i in rows])
            for i, value in zip(rows, scores.tolist()):
                values[i] = value
        return values


BUILTIN_REWARDS = {"repetition_penalty": repetition_penalty, "answer_accuracy": answer_accuracy}
MODEL_REWARDS = {"continuation_loglik": ContinuationLogLikelihood}  # built with a scorer by the trainer


def reward_name(func) -> str:
    return getattr(func, "__name__", type(func).__name__)


def import_reward(spec: str) -> Callable:
    """A user reward function from "package.module:function" (or "package.module.function")."""
    module, sep, attr = spec.partition(":")
    if not sep:
        module, _, attr = spec.rpartition(".")
    try:
        func = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(
            f"reward_funcs: {spec!r} is neither a built-in ({', '.join(sorted({**BUILTIN_REWARDS, **MODEL_REWARDS}))}) "
            f"nor an importable 'module:function' ({error})"
        ) from None
    if not callable(func):
        raise ValueError(f"reward_funcs: {spec!r} is not callable")
    return func


def call_rewards(funcs: Sequence[Callable], names: Sequence[str], prompts: list[str], completions: list[str],
                 completion_ids: list[list[int]], columns: dict[str, list]) -> tuple[torch.Tensor, torch.Tensor]:
    """(F, N) float64 rewards and the (F, N) mask of values given (None = not applicable: 0 there).

    A wrong number of values is an error naming the function.
    """
    out = torch.zeros((len(funcs), len(completions)), dtype=torch.float64)
    applicable = torch.zeros_like(out, dtype=torch.bool)
    for f, (func, name) in enumerate(zip(funcs, names)):
        values = func(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise ValueError(f"reward function {name!r} returned {type(values).__name__} {values!r:.60}: it must "
                             f"return a list of {len(completions)} floats (None = not applicable)")
        if len(values) != len(completions):
            raise ValueError(f"reward function {name!r} returned {len(values)} values for {len(completions)} completions")
        for i, value in enumerate(values):
            if value is None:
                continue
            try:
                out[f, i] = float(value)  # NaN / inf pass: the trainer flags the update (named by function)
            except (TypeError, ValueError):
                raise ValueError(f"reward function {name!r} returned {value!r:.60} for completion {i}: "
                                 "expected a float (or None = not applicable)") from None
            applicable[f, i] = True
    return out, applicable


def nonfinite_reward_names(rewards: torch.Tensor, applicable: torch.Tensor, names: Sequence[str]) -> list[str]:
    """Names of the functions that returned NaN / inf (not None) for some row."""
    bad = applicable & ~torch.isfinite(rewards)
    return [name for name, row in zip(names, bad) if bool(row.any())]


def combine_rewards(rewards: torch.Tensor, applicable: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """(N,) float32 sum_f w_f r_f over the applicable functions of each row (0 where none applies)."""
    w = torch.as_tensor(list(weights), dtype=torch.float64).unsqueeze(1)
    terms = torch.where(applicable, rewards * w, torch.zeros_like(rewards))
    return terms.sum(dim=0).float()
