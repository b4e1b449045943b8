"""Raw-text data sets (one column ``text``) for PPO data mixtures.

:func:`load_text_dataset` accepts three kinds of ``name``:

* a registered name (see :mod:`implicit_reasoning.data.registry`). A raw-text set
  (checker ``"none"``: ``wikitext``, ``cnn_dailymail``, ``daily_dialog``, ``europarl``,
  ``bookcorpus``) yields its converter's text; ``text_column`` instead takes that raw
  column as it is, and is required for question/answer sets. ``dataset_path`` replaces
  the hub with local files in the hub schema, as everywhere in the registry. Wikitext
  rows (and the wiki tasks') are joined into articles, so one row is one article.
* an existing local file or directory (json/jsonl/csv/parquet; a directory holds one
  ``{split}.ext`` per split, ``eval`` also found as ``validation``/``valid``/``dev``),
  with ``text_column``.
* any other hub id, with ``text_column``: ``datasets.load_dataset(name, dataset_config,
  split=...)``, where our ``"eval"`` is asked for as ``"validation"`` and every other
  split name is passed on unchanged.

Texts are stripped (a list value, e.g. dialog turns, is joined with newlines first) and
rows shorter than ``min_chars`` are dropped. Errors are ``ValueError`` naming dataset,
split and column.
"""

from __future__ import annotations

import datasets

from .registry import (
    CHECKER_NONE,
    CUSTOM_SPLIT_FILES,
    SANITY_CHECK_SIZE,
    _load_local,
    get_dataset_spec,
    is_custom_path,
    list_datasets,
    load_examples,
    load_raw_dataset,
)
from .sources import WIKI_TASKS, wikitext_articles

__all__ = ["load_text_dataset"]

_WIKI_NAMES = ("wikitext", *WIKI_TASKS)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "\n".join(str(v).strip() for v in value if v is not None)
    return str(value)


def _take_column(ds: datasets.Dataset, column: str, name: str, split: str) -> datasets.Dataset:
    """``ds`` reduced to ``column``, renamed ``text``; a missing column names what is there."""
    if column not in ds.column_names:
        raise ValueError(
            f"dataset {name!r} split {split!r} has no text column {column!r}; columns present: {ds.column_names}"
        )
    ds = ds.select_columns([column])
    return ds.rename_column(column, "text") if column != "text" else ds


def _registered(name, split, dataset_config, dataset_path, sanity_check, seed, text_column):
    """(dataset with a ``text`` column, name of the raw column the text came from)."""
    spec = get_dataset_spec(name)
    if text_column is None and spec.checker != CHECKER_NONE:
        raise ValueError(
            f"dataset {name!r} split {split!r} is a question/answer set (checker {spec.checker!r}), not raw text; "
            f"pass text_column= with one of its columns {list(spec.required_columns)} "
            f"(raw-text sets: {[n for n in list_datasets() if get_dataset_spec(n).checker == CHECKER_NONE]})"
        )
    if text_column is not None:
        raw = load_raw_dataset(name, split, dataset_config, dataset_path, sanity_check, seed)
        ds = _take_column(raw, text_column, name, split)
    else:
        ds = load_examples(name, split, dataset_config, dataset_path, sanity_check, seed)
        ds = ds.select_columns(["question"]).rename_column("question", "text")
    if name in _WIKI_NAMES:
        ds = datasets.Dataset.from_dict({"text": wikitext_articles([_text(t) for t in ds["text"]])})
    return ds, text_column or spec.required_columns[0]


def _unregistered(name, split, dataset_config, text_column):
    if text_column is None:
        raise ValueError(
            f"dataset {name!r} split {split!r}: an unregistered data set needs text_column= "
            f"(registered names: {', '.join(list_datasets())})"
        )
    if is_custom_path(name):
        raw = _load_local(name, CUSTOM_SPLIT_FILES.get(split, (split,)), split, name, split)
    else:
        raw = datasets.load_dataset(name, dataset_config, split="validation" if split == "eval" else split)
    return _take_column(raw, text_column, name, split)


def load_text_dataset(
    name: str,
    split: str,
    dataset_config: str | None = None,
    dataset_path: str | None = None,
    sanity_check: bool = False,
    seed: int = 0,
    text_column: str | None = None,
    min_chars: int = 1,
) -> datasets.Dataset:
    """One split as a data set with exactly one column ``text`` (stripped, >= ``min_chars`` characters).

    ``sanity_check=True`` keeps at most ``SANITY_CHECK_SIZE`` rows. See the module docstring
    for the kinds of ``name`` and the errors.
    """
    if name not in list_datasets():
        if dataset_path:
            raise ValueError(f"dataset {name!r}: dataset_path only applies to registered names; "
                             "pass the local file or directory as the name instead")
        ds, column = _unregistered(name, split, dataset_config, text_column), text_column
    else:
        ds, column = _registered(name, split, dataset_config, dataset_path, sanity_check, seed, text_column)

    def clean(batch):
        texts = (_text(value).strip() for value in batch["text"])
        return {"text": [text for text in texts if len(text) >= min_chars]}

    ds = ds.map(clean, batched=True, remove_columns=ds.column_names, desc=f"Cleaning {name} {split} text")
    if sanity_check:
        ds = ds.select(range(min(SANITY_CHECK_SIZE, len(ds))))
    if len(ds) == 0:
        raise ValueError(
            f"dataset {name!r} split {split!r}: no text of at least {min_chars} character(s) in column {column!r}"
        )
    return ds
