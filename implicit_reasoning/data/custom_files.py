"""A user's own data file (``dataset_name`` = a local file or directory): what its columns mean.

* With a ``question`` column the prompt is built from it exactly as for a registry set: LaTRO /
  SFT / STaR / PPO wrap ``"Question: {question}\\n{cot_trigger}"`` in the chat template
  (``use_chat_template``), Markovian puts it after its ``instruction``. ``responses`` defaults to
  ``" The answer is {groundtruth}."`` and ``rationale`` (for warm starts) to empty. A ``queries``
  column beside it is not used (one warning per file).
* With only ``queries`` (finished prompts, LaTRO's three-column format: ``queries``,
  ``responses``, ``groundtruth``) the prompts are used as they are: ``cot_trigger`` and
  ``use_chat_template`` do not apply (one warning per file says so), and Markovian, which builds
  its own prompt around a question, cannot use the file (an error naming the column).

Every file needs ``groundtruth``: one number per row (the numeric checker scores completions).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import datasets

from .prompts import format_prompt, question_text

QUESTION, QUERIES, RESPONSES, GOLD = "question", "queries", "responses", "groundtruth"
FINISHED_PROMPT_COLUMNS = (QUERIES, RESPONSES, GOLD)
WARNED: set[tuple[str, str]] = set()  # (file, what) pairs already warned about in this process


def _warn_once(path: str, what: str, message: str) -> None:
    key = (str(Path(path).resolve()), what)
    if key not in WARNED:
        WARNED.add(key)
        warnings.warn(message, UserWarning, stacklevel=4)  # the caller of load_task_dataset


def builds_prompts(ds: datasets.Dataset) -> bool:
    """True when the file has a ``question`` column to build prompts from."""
    return QUESTION in ds.column_names


def required_columns(ds: datasets.Dataset) -> tuple[str, ...]:
    """The columns a file must have: ``question`` + ``groundtruth``, or ``queries`` + ``responses`` + ``groundtruth``."""
    return (QUESTION, GOLD) if builds_prompts(ds) else FINISHED_PROMPT_COLUMNS


def _gold_text(value) -> str:
    return str(value).strip()


def task_rows(ds: datasets.Dataset, path: str, tokenizer, cot_trigger: str, use_chat_template: bool):
    """``queries`` / ``responses`` / ``groundtruth`` (strings) of a custom file, the prompt built as the module says."""
    if ds.features[GOLD] != datasets.Value("string"):
        ds = ds.cast_column(GOLD, datasets.Value("string"))
    if not builds_prompts(ds):
        _warn_once(path, "finished", (
            f"custom data file {path}: its 'queries' are used as they are (finished prompts): cot_trigger and "
            "use_chat_template do not apply to them. Add a 'question' column to have the prompt built from it "
            "(shown once per file)"))
        return ds
    if QUERIES in ds.column_names:
        _warn_once(path, "replaced", (
            f"custom data file {path}: prompts are built from its 'question' column (cot_trigger "
            f"{cot_trigger!r}, use_chat_template={use_chat_template}); its 'queries' column is not used "
            "(shown once per file)"))
    has_responses = RESPONSES in ds.column_names

    def convert(batch):
        gold = [_gold_text(g) for g in batch[GOLD]]
        return {
            QUERIES: [format_prompt(tokenizer, question_text(q, cot_trigger), use_chat_template=use_chat_template)
                      for q in batch[QUESTION]],
            RESPONSES: batch[RESPONSES] if has_responses else [f" The answer is {g}." for g in gold],
            GOLD: gold,
        }

    return ds.map(convert, batched=True, desc="Building prompts")


def example(row: dict) -> dict:
    """``question`` / ``rationale`` / ``answer`` of one row of a file with a ``question`` column."""
    return {"question": row[QUESTION], "rationale": row.get("rationale") or "", "answer": _gold_text(row[GOLD])}


def check_has_questions(ds: datasets.Dataset, path: str, split: str) -> None:
    """Loaders that build their own prompt around a question (Markovian) need the ``question`` column."""
    if not builds_prompts(ds):
        raise ValueError(
            f"dataset {path!r} split {split!r} has no 'question' column (columns: {ds.column_names}): its 'queries' "
            "are finished prompts, and this trainer builds its own prompt around the question. Add a 'question' "
            "column (the bare question text)"
        )
