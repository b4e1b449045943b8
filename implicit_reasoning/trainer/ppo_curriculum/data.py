"""The rows PPO trains on: `prompt`, `continuation`, `groundtruth` (+ the mixture's `source`, `mixture_index`).

* Question/answer datasets (gsm8k, arithmetic, arc_challenge, ...): `prompt` is the registry's
  prompt (chat template and `cot_trigger` rule of every trainer), `continuation` the gold
  response " The answer is {answer}.", `groundtruth` the answer (for `answer_accuracy`).
* Raw-text datasets (wikitext, cnn_dailymail, ..., or any text column): `prompt` is the first
  `prompt_length` tokens of a text, `continuation` the next `response_length` tokens (for
  `continuation_loglik` and the validation loss), `groundtruth` empty. Texts of no more than
  `prompt_length` tokens are dropped.
"""

from __future__ import annotations

import datasets

from ...data.input_checks import missing_path_message
from ...data.raw_text import load_text_dataset
from ...data.registry import (
    CHECKER_NONE,
    get_dataset_spec,
    is_custom_path,
    load_task_dataset,
)
from ..core.curriculum_config import entry_label

PPO_COLUMNS = ("prompt", "continuation", "groundtruth")


def is_text_entry(entry: dict) -> bool:
    """Raw text: a `text_column` is given, or a registry name whose checker is "none"; else question/answer."""
    if entry.get("text_column"):
        return True
    if is_custom_path(entry["name"]):
        return False
    if missing_path_message(entry["name"], "dataset"):  # meant as a local file: say it is missing
        raise ValueError(missing_path_message(entry["name"], "dataset"))
    try:
        return get_dataset_spec(entry["name"]).checker == CHECKER_NONE
    except ValueError:
        raise ValueError(f"datasets entry {entry['name']!r}: not a registered dataset nor a local path; a hub "
                         "text dataset needs `text_column`") from None


def load_entry_rows(entry: dict, split: str, tokenizer, config) -> datasets.Dataset:
    """One mixture entry's `split` as PPO_COLUMNS."""
    common = dict(dataset_config=entry.get("config"), dataset_path=entry.get("path"),
                  sanity_check=config.sanity_check, seed=config.seed)
    if not is_text_entry(entry):
        rows = load_task_dataset(entry["name"], split, tokenizer, cot_trigger=config.cot_trigger,
                                 use_chat_template=config.use_chat_template, **common)
        return rows.map(lambda r: {"prompt": r["queries"], "continuation": r["responses"],
                                   "groundtruth": r["groundtruth"]},
                        remove_columns=rows.column_names, desc="PPO rows")
    texts = load_text_dataset(entry["name"], split, text_column=entry.get("text_column"), **common)
    rows = text_rows(texts["text"], tokenizer, config.prompt_length, config.response_length)
    if len(rows) == 0:
        raise ValueError(f"dataset {entry_label(entry)!r} split {split!r}: no text is longer than "
                         f"prompt_length={config.prompt_length} tokens")
    return rows


def text_rows(texts: list[str], tokenizer, prompt_length: int, continuation_length: int) -> datasets.Dataset:
    """Prompt = a text's first `prompt_length` tokens, continuation = the next `continuation_length` (decoded)."""
    out = {name: [] for name in PPO_COLUMNS}
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        if len(ids) <= prompt_length:
            continue
        out["prompt"].append(tokenizer.decode(ids[:prompt_length]))
        out["continuation"].append(tokenizer.decode(ids[prompt_length : prompt_length + continuation_length]))
        out["groundtruth"].append("")
    return datasets.Dataset.from_dict(out)
