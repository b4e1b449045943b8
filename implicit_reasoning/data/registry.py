"""Dataset registry and per-dataset preparation.

Every supported data set is one :class:`DatasetSpec` in a single registry. A spec says
where the data lives on the Hugging Face Hub (or how to generate it), which columns the
hub schema has, how one raw row becomes ``{"question", "rationale", "answer"}`` and
which answer checker (see :mod:`implicit_reasoning.evaluation.checkers`) scores it.

Our split names are ``"train"``, ``"eval"`` and ``"test"``; each spec maps them to hub
split names (which may use the ``datasets`` slicing syntax, e.g. ``"test[:80%]"``).

Local files
    * ``dataset_path`` overrides the hub for a registered set: a directory holding one
      file per hub split (``{hub_split}.jsonl|.json|.csv|.parquet``, or hub-style shards
      ``{hub_split}-*.parquet``) or a single file used for every split. The files must
      have exactly the hub schema. ``dataset_config`` is ignored for local files.
    * A ``name`` that is a path to an existing file or directory is a *custom* data set:
      ``question`` + ``groundtruth`` (the prompt is built from the question), or LaTRO's
      finished ``queries`` + ``responses`` + ``groundtruth`` (used as they are); see
      :mod:`implicit_reasoning.data.custom_files`. A directory holds ``train.*``, ``eval.*``
      (or ``validation.*`` / ``valid.*`` / ``dev.*``) and ``test.*``; a single file serves
      every split. Custom sets are scored with the ``"numeric"`` checker.

Generated sets (``arithmetic``, ``arithmetic_negative``) need no download. Their
``dataset_config`` is a parameter string such as ``"num_terms=3,max_value=20,
num_examples=2000"``. Each split draws from its own seed, ``3 * seed + {train: 0,
eval: 1, test: 2}``, so splits never share a random stream (for very small parameter
ranges identical questions can still occur by chance).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from . import custom_files
from .input_checks import check_gold_column, check_text_columns, check_utf8, example_problem, missing_path_message
from .prompts import DEFAULT_COT_TRIGGER, format_prompt, question_text
from .sources import (
    CHOICE_LETTERS,
    GENERATED_SPLIT_SEED_OFFSETS,
    WIKI_TASKS,
    GoldAnswerError,
    arc_example,
    arithmetic_example,
    build_wiki_examples,
    cnn_dailymail_example,
    daily_dialog_example,
    europarl_example,
    generate_arithmetic,
    generate_arithmetic_negative,
    generate_synthetic_text,
    gsm8k_example,
    last_boxed_content,
    math_example,
    mmlu_example,
    mmmlu_example,
    split_rng,
    wikitext_articles,
    wikitext_example,
)
from .word_problems import generate_word_problems, word_problem_example

__all__ = [
    "CARVED_FROM_TEST", "CARVED_FROM_TRAIN", "CHOICE_LETTERS", "GENERATED_SPLIT_SEED_OFFSETS", "WIKI_TASKS",
    "DatasetSpec", "GoldAnswerError",
    "build_latro_dataset", "build_wiki_examples", "format_prompt", "generate_arithmetic",
    "generate_arithmetic_negative", "get_dataset_spec", "is_custom_path", "last_boxed_content", "list_datasets",
    "load_examples", "load_markovian_examples", "load_raw_dataset", "load_task_dataset", "register_dataset",
    "split_rng", "wikitext_articles",
]

SANITY_CHECK_SIZE = 32
"""Number of leading rows kept when ``sanity_check=True``."""

GENERATED_SPLIT_SIZES = {"train": 5000, "eval": 200, "test": 500}
"""Default number of examples per split for generated sets (``num_examples`` overrides)."""

CHECKER_NUMERIC = "numeric"
CHECKER_MATH = "math"
CHECKER_MULTIPLE_CHOICE = "multiple_choice"
CHECKER_NONE = "none"
"""Checker key of raw-text sets (wikitext): they have no answer to check."""

CUSTOM_COLUMNS = custom_files.FINISHED_PROMPT_COLUMNS  # or `question` + `groundtruth` (see custom_files)
CUSTOM_SPLIT_FILES = {
    "train": ("train",),
    "eval": ("eval", "validation", "valid", "dev"),
    "test": ("test",),
}
LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one data set and turn its rows into question/rationale/answer."""

    name: str
    hub_path: str | None
    hub_config: str | None
    splits: dict[str, str]
    required_columns: tuple[str, ...]
    to_example: Callable[[dict], dict]
    checker: str
    generator: Callable | None = None
    # A config name that stands for several hub configs loaded and concatenated
    # (e.g. MATH "all" -> its seven subjects).
    config_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # A hub revision (branch/tag/commit), e.g. "refs/convert/parquet" for the Hub's own parquet export of
    # a repo whose main branch still holds a loading script (no longer supported by ``datasets``).
    hub_revision: str | None = None


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec, overwrite: bool = False) -> None:
    """Add ``spec`` to the registry (``overwrite=True`` to replace an existing entry)."""
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {spec.name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[spec.name] = spec


def get_dataset_spec(name: str) -> DatasetSpec:
    """Return the registered spec for ``name``; unknown names raise ``ValueError``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        if missing_path_message(name, "dataset_name"):  # meant as a file: say that it is missing
            raise ValueError(missing_path_message(name, "dataset_name")) from None
        raise ValueError(
            f"unknown dataset {name!r}; registered datasets: {', '.join(list_datasets())} "
            "(or pass a path to a local file/directory with columns queries, responses, groundtruth)"
        ) from None


def list_datasets() -> list[str]:
    """Names of all registered data sets, sorted."""
    return sorted(_REGISTRY)


def is_custom_path(name: str) -> bool:
    """True when ``name`` is not a registry name but an existing local file or directory."""
    return name not in _REGISTRY and Path(name).exists()

def _parse_scalar(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_generator_config(spec: DatasetSpec, dataset_config: str | None) -> dict:
    """Parse ``"key=value,..."`` into generator parameters, rejecting unknown keys."""
    fixed = {"split", "n", "seed"}
    allowed = [p for p in inspect.signature(spec.generator).parameters if p not in fixed] + ["num_examples"]
    params = {}
    for item in filter(None, (part.strip() for part in (dataset_config or "").split(","))):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not key:
            raise ValueError(f"{spec.name}: malformed dataset_config item {item!r}; expected key=value")
        if key not in allowed:
            raise ValueError(f"{spec.name}: unknown dataset_config key {key!r}; allowed keys: {', '.join(allowed)}")
        params[key] = _parse_scalar(value)
    return params


def _generate(spec: DatasetSpec, split: str, dataset_config: str | None, seed: int, sanity_check: bool):
    params = parse_generator_config(spec, dataset_config)
    n = params.pop("num_examples", GENERATED_SPLIT_SIZES[split])
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"{spec.name}: num_examples must be an integer >= 1, got {n!r}")
    if sanity_check:
        n = min(n, SANITY_CHECK_SIZE)
    return datasets.Dataset.from_list(spec.generator(split, n, seed, **params))

# --------------------------------------------------------------------------- loading


def _find_split_file(path: Path, stems: tuple[str, ...], dataset: str, split: str) -> Path:
    if path.is_file():
        return path
    for stem in stems:
        for suffix in LOCAL_BUILDERS:
            for candidate in (path / f"{stem}{suffix}", *sorted(path.glob(f"{stem}-*{suffix}"))):
                if candidate.is_file():
                    return candidate
    present = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    raise FileNotFoundError(
        f"dataset {dataset!r} split {split!r}: no file named {' or '.join(stems)}"
        f"{{{','.join(LOCAL_BUILDERS)}}} in {str(path)!r} (found: {present})"
    )


_SHARED_FILE_WARNED: set[str] = set()


def _warn_shared_file(file: Path, dataset: str, split: str) -> None:
    """Once per file and process: a single file serves every split, so its eval / test split is its training rows."""
    key = str(file.resolve())
    if split == "train" or key in _SHARED_FILE_WARNED:
        return
    _SHARED_FILE_WARNED.add(key)
    warnings.warn(
        f"dataset {dataset!r}: the single file {str(file)!r} serves every split, so its {split!r} split is the "
        "training rows and accuracy measured on it is training accuracy, not held-out accuracy. For a held-out "
        "split pass a directory holding train.* and eval.* (or validation / dev) files (docs/data.md)",
        UserWarning, stacklevel=4)


def _load_local(path: str | Path, stems: tuple[str, ...], hub_split: str, dataset: str, split: str):
    """Load one split from a local file/dir with the json/csv/parquet builders."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset {dataset!r}: local path {str(path)!r} does not exist")
    file = _find_split_file(path, stems, dataset, split)
    if path.is_file() and "[" not in hub_split:  # a sliced split (CARVED_FROM_*) is its own part of the file
        _warn_shared_file(file, dataset, split)
    builder = LOCAL_BUILDERS.get(file.suffix.lower())
    if builder is None:
        raise ValueError(f"dataset {dataset!r}: unsupported file type {file.name!r}; use {sorted(LOCAL_BUILDERS)}")
    check_utf8(file, dataset, split)
    no_rows = f"dataset {dataset!r} split {split!r}: file {str(file)!r} has no rows"
    base = hub_split.split("[", 1)[0]
    # Re-key the file under the base split name so datasets' slicing syntax still applies.
    try:
        ds = datasets.load_dataset(builder, data_files={base: str(file)}, split=base + hub_split[len(base):])
    except Exception as error:  # datasets / pyarrow / json raise many types for a malformed file
        cause = error.__cause__ or error
        if isinstance(cause, StopIteration) or "corresponds to no data" in str(cause) or not file.read_bytes().strip():
            raise ValueError(no_rows) from None
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]
        raise ValueError(f"dataset {dataset!r} split {split!r}: file {str(file)!r} is not valid {file.suffix[1:]} "
                         f"({type(cause).__name__}: {reason})") from error
    if len(ds) == 0:
        raise ValueError(f"{no_rows}{f' in the slice {hub_split!r}' if hub_split != base else ''}")
    return ds


def _load_hub(spec: DatasetSpec, hub_split: str, dataset_config: str | None):
    config = dataset_config or spec.hub_config
    revision = {"revision": spec.hub_revision} if spec.hub_revision else {}
    members = spec.config_groups.get(config)
    if members:
        parts = [datasets.load_dataset(spec.hub_path, member, split=hub_split, **revision) for member in members]
        return datasets.concatenate_datasets(parts)
    return datasets.load_dataset(spec.hub_path, config, split=hub_split, **revision)


def _check_columns(ds: datasets.Dataset, required: tuple[str, ...], dataset: str, split: str) -> None:
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"dataset {dataset!r} split {split!r} is missing column(s) {missing}; "
            f"columns present: {ds.column_names}"
        )


def _custom_spec(path: str) -> DatasetSpec:
    return DatasetSpec(
        name=path, hub_path=None, hub_config=None, splits={s: s for s in CUSTOM_SPLIT_FILES},
        required_columns=(custom_files.GOLD,), to_example=custom_files.example, checker=CHECKER_NUMERIC,
    )


def resolve_spec(name: str) -> DatasetSpec:
    """The registered spec for ``name``, or an ad-hoc spec for a custom local path."""
    return _custom_spec(name) if is_custom_path(name) else get_dataset_spec(name)


def load_raw_dataset(name, split, dataset_config=None, dataset_path=None, sanity_check=False, seed=0):
    """Load one split with its hub schema (hub, local override, generator or custom path)."""
    spec = resolve_spec(name)
    if split not in spec.splits:
        raise ValueError(f"dataset {name!r}: unknown split {split!r}; available: {sorted(spec.splits)}")
    hub_split = spec.splits[split]
    if is_custom_path(name):
        ds = _load_local(name, CUSTOM_SPLIT_FILES[split], hub_split, name, split)
    elif dataset_path:
        ds = _load_local(dataset_path, (hub_split.split("[", 1)[0],), hub_split, name, split)
    elif spec.generator is not None:
        ds = _generate(spec, split, dataset_config, seed, sanity_check)
    else:
        ds = _load_hub(spec, hub_split, dataset_config)
    _check_columns(ds, custom_files.required_columns(ds) if is_custom_path(name) else spec.required_columns, name,
                   split)
    if sanity_check:
        ds = ds.select(range(min(SANITY_CHECK_SIZE, len(ds))))
    return ds


def load_examples(name, split, dataset_config=None, dataset_path=None, sanity_check=False, seed=0):
    """Load a split as columns ``question``, ``rationale``, ``answer`` (gold answer text).

    A row whose gold answer cannot be parsed raises ``ValueError`` naming dataset, split
    and the row index within the loaded split.
    """
    spec = resolve_spec(name)
    raw = load_raw_dataset(name, split, dataset_config, dataset_path, sanity_check, seed)
    if is_custom_path(name):  # the columns custom_files.example reads, named in the errors
        custom_files.check_has_questions(raw, name, split)
        check_text_columns(raw, (custom_files.QUESTION,), name, split)
        check_gold_column(raw, custom_files.GOLD, spec.checker, name, split)

    def convert(batch, indices):
        out = {"question": [], "rationale": [], "answer": []}
        for j, index in enumerate(indices):
            try:
                example = spec.to_example({key: values[j] for key, values in batch.items()})
                problem = example_problem(example, spec.checker)
                if problem:
                    raise ValueError(problem)
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                raise ValueError(f"dataset {name!r} split {split!r} row {index}: {err}") from err
            for key in out:
                out[key].append(str(example[key]))
        return out

    return raw.map(convert, batched=True, with_indices=True, remove_columns=raw.column_names,
                   desc=f"Preparing {spec.name} {split}")

# --------------------------------------------------------------------------- prompts


def build_latro_dataset(
    examples: datasets.Dataset, tokenizer, cot_trigger: str = DEFAULT_COT_TRIGGER, use_chat_template: bool = True
):
    """Columns ``queries``, ``responses``, ``groundtruth`` (+ ``question``, ``rationale``).

    ``queries`` follows the prompt rule of :mod:`implicit_reasoning.data.prompts` with the
    user text ``"Question: {question}\n{cot_trigger}"``. ``responses`` is
    ``" The answer is {answer}."`` with a leading space: rationale and response are
    tokenized separately and concatenated, so the space keeps "The" a separate word
    instead of gluing it onto the rationale's last token.
    """
    _check_columns(examples, ("question", "rationale", "answer"), "examples", "-")

    def convert(batch):
        return {
            "queries": [
                format_prompt(tokenizer, question_text(q, cot_trigger), use_chat_template=use_chat_template)
                for q in batch["question"]
            ],
            "responses": [f" The answer is {a}." for a in batch["answer"]],
            "groundtruth": list(batch["answer"]),
        }

    return examples.map(convert, batched=True, remove_columns=["answer"], desc="Building prompts")


def load_task_dataset(name, split, tokenizer, dataset_config=None, dataset_path=None, sanity_check=False, seed=0,
                      cot_trigger: str = DEFAULT_COT_TRIGGER, use_chat_template: bool = True):
    """Training/eval data with ``queries``/``responses``/``groundtruth``.

    Registered sets go through :func:`load_examples` and :func:`build_latro_dataset` (with
    ``cot_trigger`` and the chat-template rule); so does a custom file's ``question`` column. A
    custom file with only finished ``queries`` is used as it is (``groundtruth`` cast to ``str``),
    with one warning per file saying so (:mod:`implicit_reasoning.data.custom_files`).
    """
    if is_custom_path(name):
        ds = load_raw_dataset(name, split, dataset_config, dataset_path, sanity_check, seed)
        check_text_columns(ds, [c for c in custom_files.required_columns(ds) if c != custom_files.GOLD], name, split)
        check_gold_column(ds, custom_files.GOLD, CHECKER_NUMERIC, name, split)
        return custom_files.task_rows(ds, name, tokenizer, cot_trigger, use_chat_template)
    spec = get_dataset_spec(name)
    if spec.checker == CHECKER_NONE:
        raise ValueError(f"dataset {name!r} is raw text without answers; use load_examples() instead")
    examples = load_examples(name, split, dataset_config, dataset_path, sanity_check, seed)
    return build_latro_dataset(examples, tokenizer, cot_trigger, use_chat_template)


# --------------------------------------------------------------------------- wiki tasks (Markovian)


def load_markovian_examples(name, split, tokenizer, question_length=200, target_length=200, dataset_config=None,
                            dataset_path=None, sanity_check=False, seed=0) -> datasets.Dataset:
    """Columns ``question``, ``rationale``, ``answer`` for the Markovian trainer.

    Wiki tasks are sliced by tokens with ``tokenizer``; every other name is :func:`load_examples`.
    """
    if name in WIKI_TASKS:
        raw = load_raw_dataset(name, split, dataset_config, dataset_path, sanity_check, seed)
        return build_wiki_examples(raw["text"], tokenizer, name, question_length, target_length, name, split)
    return load_examples(name, split, dataset_config, dataset_path, sanity_check, seed)

# --------------------------------------------------------------------------- the registry

_OUR_SPLITS_TRAIN_TEST = {"train": "train", "eval": "test", "test": "test"}  # no hub validation split
CARVED_FROM_TEST = {"train": "test[:80%]", "eval": "test[80%:90%]", "test": "test[90%:]"}
"""Split map for sets that ship only a test split: disjoint 80/10/10 % slices of it (mmmlu uses it;
pass it as ``splits=`` when registering such a set)."""
CARVED_FROM_TRAIN = {"train": "train[:80%]", "eval": "train[80%:90%]", "test": "train[90%:]"}
"""The same for sets that ship only a train split (europarl, bookcorpus)."""
_MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                  "number_theory", "prealgebra", "precalculus")

for _spec in (
    DatasetSpec("gsm8k", "openai/gsm8k", "main", dict(_OUR_SPLITS_TRAIN_TEST),
                ("question", "answer"), gsm8k_example, CHECKER_NUMERIC),
    DatasetSpec("math", "EleutherAI/hendrycks_math", "all", dict(_OUR_SPLITS_TRAIN_TEST),
                ("problem", "level", "type", "solution"), math_example, CHECKER_MATH,
                config_groups={"all": _MATH_SUBJECTS}),
    DatasetSpec("arc_challenge", "allenai/ai2_arc", "ARC-Challenge",
                {"train": "train", "eval": "validation", "test": "test"},
                ("id", "question", "choices", "answerKey"), arc_example, CHECKER_MULTIPLE_CHOICE),
    DatasetSpec("mmlu", "cais/mmlu", "all",
                {"train": "auxiliary_train", "eval": "validation", "test": "test"},
                ("question", "subject", "choices", "answer"), mmlu_example, CHECKER_MULTIPLE_CHOICE),
    # MMMLU ships only a test split: we carve disjoint train/eval/test slices from it.
    DatasetSpec("mmmlu", "openai/MMMLU", "YO_NG", dict(CARVED_FROM_TEST),
                ("Question", "A", "B", "C", "D", "Answer", "Subject"), mmmlu_example, CHECKER_MULTIPLE_CHOICE),
    DatasetSpec("wikitext", "Salesforce/wikitext", "wikitext-103-raw-v1",
                {"train": "train", "eval": "validation", "test": "test"},
                ("text",), wikitext_example, CHECKER_NONE),
    # Markovian wiki tasks: the wikitext rows, sliced by tokens in load_markovian_examples.
    *(DatasetSpec(_task, "Salesforce/wikitext", "wikitext-103-raw-v1",
                  {"train": "train", "eval": "validation", "test": "test"},
                  ("text",), wikitext_example, CHECKER_NONE) for _task in WIKI_TASKS),
    # Raw-text sets for PPO mixtures (implicit_reasoning.data.raw_text); text column listed first.
    DatasetSpec("cnn_dailymail", "abisee/cnn_dailymail", "3.0.0",
                {"train": "train", "eval": "validation", "test": "test"},
                ("article", "highlights", "id"), cnn_dailymail_example, CHECKER_NONE),
    # main still holds a loading script; the Hub's parquet export has the same schema and splits.
    DatasetSpec("daily_dialog", "li2017dailydialog/daily_dialog", None,
                {"train": "train", "eval": "validation", "test": "test"},
                ("dialog", "act", "emotion"), daily_dialog_example, CHECKER_NONE,
                hub_revision="refs/convert/parquet"),
    DatasetSpec("europarl", "Helsinki-NLP/europarl", "en-fr", dict(CARVED_FROM_TRAIN),
                ("translation",), europarl_example, CHECKER_NONE),
    DatasetSpec("bookcorpus", "rojagtap/bookcorpus", None, dict(CARVED_FROM_TRAIN),
                ("text",), wikitext_example, CHECKER_NONE),
    DatasetSpec("arithmetic", None, None, {s: s for s in GENERATED_SPLIT_SIZES},
                ("terms",), arithmetic_example, CHECKER_NUMERIC, generator=generate_arithmetic),
    DatasetSpec("synthetic_text", None, None, {s: s for s in GENERATED_SPLIT_SIZES},
                ("text",), wikitext_example, CHECKER_NONE, generator=generate_synthetic_text),
    DatasetSpec("arithmetic_negative", None, None, {s: s for s in GENERATED_SPLIT_SIZES},
                ("terms",), arithmetic_example, CHECKER_NUMERIC, generator=generate_arithmetic_negative),
    DatasetSpec("word_problems", None, None, {s: s for s in GENERATED_SPLIT_SIZES},
                ("question", "rationale", "answer"), word_problem_example, CHECKER_NUMERIC,
                generator=generate_word_problems),
):
    register_dataset(_spec)
del _spec
