"""Dataset registry and per-dataset preparation.

Every supported data set is one :class:`DatasetSpec` in a single registry. A spec says
where the data lives on the Hugging Face Hub (or how to generate it), which columns the
hub schema has, how one raw row becomes ``{"question", "rationale", "answer"}`` and
which answer checker (see :mod:`implicit_reasoning.utils.eval_utils`) scores it.

Our split names are ``"train"``, ``"eval"`` and ``"test"``; each spec maps them to hub
split names (which may use the ``datasets`` slicing syntax, e.g. ``"test[:80%]"``).

Local files
    * ``dataset_path`` overrides the hub for a registered set: a directory holding one
      file per hub split (``{hub_split}.jsonl|.json|.csv|.parquet``, or hub-style shards
      ``{hub_split}-*.parquet``) or a single file used for every split. The files must
      have exactly the hub schema. ``dataset_config`` is ignored for local files.
    * A ``name`` that is a path to an existing file or directory is a *custom* data set
      with the three LaTRO columns ``queries``, ``responses``, ``groundtruth``. A
      directory holds ``train.*``, ``eval.*`` (or ``validation.*`` / ``valid.*`` /
      ``dev.*``) and ``test.*``; a single file serves every split. Custom sets are
      scored with the ``"numeric"`` checker.

Generated sets (``arithmetic``, ``arithmetic_negative``) need no download. Their
``dataset_config`` is a parameter string such as ``"num_terms=3,max_value=20,
num_examples=2000"``. Each split draws from its own seed, ``3 * seed + {train: 0,
eval: 1, test: 2}``, so splits never share a random stream (for very small parameter
ranges identical questions can still occur by chance).
"""

from __future__ import annotations

import inspect
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import datasets

SANITY_CHECK_SIZE = 32
"""Number of leading rows kept when ``sanity_check=True``."""

GENERATED_SPLIT_SIZES = {"train": 5000, "eval": 200, "test": 500}
"""Default number of examples per split for generated sets (``num_examples`` overrides)."""

GENERATED_SPLIT_SEED_OFFSETS = {"train": 0, "eval": 1, "test": 2}
"""Per-split seed offset for generated sets: the split's RNG seed is ``3 * seed + offset``."""

DEFAULT_COT_TRIGGER = "Let's think step by step."

CHECKER_NUMERIC = "numeric"
CHECKER_MATH = "math"
CHECKER_MULTIPLE_CHOICE = "multiple_choice"
CHECKER_NONE = "none"
"""Checker key of raw-text sets (wikitext): they have no answer to check."""

CUSTOM_COLUMNS = ("queries", "responses", "groundtruth")
CUSTOM_SPLIT_FILES = {
    "train": ("train",),
    "eval": ("eval", "validation", "valid", "dev"),
    "test": ("test",),
}
LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
CHOICE_LETTERS = "ABCDE"


class GoldAnswerError(ValueError):
    """A raw row whose gold answer cannot be parsed (re-raised with dataset/split/row)."""


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


# --------------------------------------------------------------------------- parsing helpers


def last_boxed_content(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``) in ``text``, nested braces handled.

    Also accepts the brace-less form ``\boxed 5``. Returns ``None`` when there is none
    or its braces are unbalanced.
    """
    starts = [m.start() for m in re.finditer(r"\\(?:boxed|fbox)(?![A-Za-z])", text)]
    if not starts:
        return None
    rest = re.sub(r"^\\(?:boxed|fbox)", "", text[starts[-1]:])
    if not rest.startswith("{"):
        token = re.match(r"\s+([^\s$]+)", rest)
        return token.group(1) if token else None
    depth = 0
    for i, ch in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            return rest[1:i].strip()
    return None


def _choices_question(question: str, letters: list[str], texts: list[str]) -> str:
    options = "\n".join(f"({letter}) {text}" for letter, text in zip(letters, texts))
    return f"{question.strip()}\n{options}"


def _choice_letter(label) -> str:
    """Map an option label (``"A"``-``"E"`` or ``"1"``-``"5"``) to its letter."""
    label = str(label).strip()
    if label.upper() in CHOICE_LETTERS and len(label) == 1:
        return label.upper()
    if label.isdigit() and 1 <= int(label) <= len(CHOICE_LETTERS):
        return CHOICE_LETTERS[int(label) - 1]
    raise GoldAnswerError(f"option label {label!r} is neither a letter A-E nor a number 1-5")


# --------------------------------------------------------------------------- per-dataset rows


def _gsm8k_example(row: dict) -> dict:
    text = row["answer"]
    if "####" not in text:
        raise GoldAnswerError("column 'answer' has no '####' gold-answer marker")
    rationale, gold = text.rsplit("####", 1)
    gold = gold.strip().replace(",", "")
    if not gold:
        raise GoldAnswerError("column 'answer' has nothing after '####'")
    rationale = re.sub(r"<<[^>]*>>", "", rationale).strip()
    return {"question": row["question"].strip(), "rationale": rationale, "answer": gold}


def _math_example(row: dict) -> dict:
    gold = last_boxed_content(row["solution"])
    if not gold:
        raise GoldAnswerError("column 'solution' has no (balanced, non-empty) \\boxed{...} answer")
    return {"question": row["problem"].strip(), "rationale": row["solution"].strip(), "answer": gold}


def _arc_example(row: dict) -> dict:
    labels, texts = row["choices"]["label"], row["choices"]["text"]
    if len(labels) != len(texts) or not labels:
        raise GoldAnswerError(f"column 'choices' has {len(labels)} labels but {len(texts)} texts")
    letters = [_choice_letter(label) for label in labels]
    gold = _choice_letter(row["answerKey"])
    if gold not in letters:
        raise GoldAnswerError(f"answerKey {row['answerKey']!r} is not one of the labels {labels}")
    return {"question": _choices_question(row["question"], letters, texts), "rationale": "", "answer": gold}


def _mmlu_example(row: dict) -> dict:
    choices = list(row["choices"])
    try:
        index = int(row["answer"])
    except (TypeError, ValueError):
        raise GoldAnswerError(f"column 'answer' {row['answer']!r} is not an integer index") from None
    if not 0 <= index < len(choices):
        raise GoldAnswerError(f"column 'answer' {index} is out of range for {len(choices)} choices")
    letters = list(CHOICE_LETTERS[: len(choices)])
    return {"question": _choices_question(row["question"], letters, choices), "rationale": "", "answer": letters[index]}


def _mmmlu_example(row: dict) -> dict:
    gold = str(row["Answer"]).strip().upper()
    if gold not in "ABCD" or len(gold) != 1:
        raise GoldAnswerError(f"column 'Answer' {row['Answer']!r} is not a letter A-D")
    texts = [str(row[letter]) for letter in "ABCD"]
    return {"question": _choices_question(row["Question"], list("ABCD"), texts), "rationale": "", "answer": gold}


def _wikitext_example(row: dict) -> dict:
    return {"question": row["text"], "rationale": "", "answer": ""}


def _custom_example(row: dict) -> dict:
    return {"question": row["queries"], "rationale": "", "answer": str(row["groundtruth"]).strip()}


# --------------------------------------------------------------------------- generated arithmetic


def split_rng(split: str, seed: int) -> random.Random:
    """RNG of one split of a generated set; splits use disjoint seeds (see module doc)."""
    if split not in GENERATED_SPLIT_SEED_OFFSETS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(GENERATED_SPLIT_SEED_OFFSETS)}")
    return random.Random(len(GENERATED_SPLIT_SEED_OFFSETS) * seed + GENERATED_SPLIT_SEED_OFFSETS[split])


def _check_arithmetic_params(num_terms: int, max_value: int) -> None:
    if not isinstance(num_terms, int) or num_terms < 1:
        raise ValueError(f"arithmetic: num_terms must be an integer >= 1, got {num_terms!r}")
    if not isinstance(max_value, int) or max_value < 1:
        raise ValueError(f"arithmetic: max_value must be an integer >= 1, got {max_value!r}")


def generate_arithmetic(split: str, n: int, seed: int, num_terms: int = 15, max_value: int = 99) -> list[dict]:
    """``n`` rows ``{"terms": [...]}`` of ``num_terms`` integers drawn from [1, max_value]."""
    _check_arithmetic_params(num_terms, max_value)
    rng = split_rng(split, seed)
    return [{"terms": [rng.randint(1, max_value) for _ in range(num_terms)]} for _ in range(n)]


def generate_arithmetic_negative(
    split: str, n: int, seed: int, num_terms: int = 15, max_value: int = 99
) -> list[dict]:
    """Like :func:`generate_arithmetic`, but integers from [-max_value, max_value] without 0."""
    _check_arithmetic_params(num_terms, max_value)
    rng = split_rng(split, seed)
    draw = lambda: rng.randint(1, max_value) * rng.choice((-1, 1))  # noqa: E731
    return [{"terms": [draw() for _ in range(num_terms)]} for _ in range(n)]


def _format_term(value: int) -> str:
    return f"(-{abs(value)})" if value < 0 else str(value)


def _arithmetic_example(row: dict) -> dict:
    terms = [int(t) for t in row["terms"]]
    if not terms:
        raise GoldAnswerError("column 'terms' is empty")
    steps, total = [], terms[0]
    for term in terms[1:]:
        steps.append(f"{_format_term(total)} + {_format_term(term)} = {_format_term(total + term)}.")
        total += term
    question = " + ".join(_format_term(t) for t in terms)
    return {"question": question, "rationale": " ".join(steps), "answer": str(total)}


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


def _load_local(path: str | Path, stems: tuple[str, ...], hub_split: str, dataset: str, split: str):
    """Load one split from a local file/dir with the json/csv/parquet builders."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset {dataset!r}: local path {str(path)!r} does not exist")
    file = _find_split_file(path, stems, dataset, split)
    builder = LOCAL_BUILDERS.get(file.suffix.lower())
    if builder is None:
        raise ValueError(f"dataset {dataset!r}: unsupported file type {file.name!r}; use {sorted(LOCAL_BUILDERS)}")
    base = hub_split.split("[", 1)[0]
    # Re-key the file under the base split name so datasets' slicing syntax still applies.
    return datasets.load_dataset(builder, data_files={base: str(file)}, split=base + hub_split[len(base):])


def _load_hub(spec: DatasetSpec, hub_split: str, dataset_config: str | None):
    config = dataset_config or spec.hub_config
    members = spec.config_groups.get(config)
    if members:
        parts = [datasets.load_dataset(spec.hub_path, member, split=hub_split) for member in members]
        return datasets.concatenate_datasets(parts)
    return datasets.load_dataset(spec.hub_path, config, split=hub_split)


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
        required_columns=CUSTOM_COLUMNS, to_example=_custom_example, checker=CHECKER_NUMERIC,
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
    _check_columns(ds, spec.required_columns, name, split)
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

    def convert(batch, indices):
        out = {"question": [], "rationale": [], "answer": []}
        for j, index in enumerate(indices):
            try:
                example = spec.to_example({key: values[j] for key, values in batch.items()})
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                raise ValueError(f"dataset {name!r} split {split!r} row {index}: {err}") from err
            for key in out:
                out[key].append(str(example[key]))
        return out

    return raw.map(convert, batched=True, with_indices=True, remove_columns=raw.column_names,
                   desc=f"Preparing {spec.name} {split}")


# --------------------------------------------------------------------------- prompts


def format_prompt(tokenizer, question: str, cot_trigger: str = DEFAULT_COT_TRIGGER) -> str:
    """The prompt x: the chat template on one user turn when the tokenizer has one, else plain text."""
    if getattr(tokenizer, "chat_template", None):
        content = f"{question}\n{cot_trigger}" if cot_trigger else question
        messages = [{"role": "user", "content": content}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    trigger = f"{cot_trigger}\n" if cot_trigger else ""
    return f"Question: {question}\n{trigger}"


def build_latro_dataset(examples: datasets.Dataset, tokenizer, cot_trigger: str = DEFAULT_COT_TRIGGER):
    """Columns ``queries``, ``responses``, ``groundtruth`` (+ ``question``, ``rationale``).

    ``responses`` is ``" The answer is {answer}."`` with a leading space: rationale and
    response are tokenized separately and concatenated, so the space keeps "The" a
    separate word instead of gluing it onto the rationale's last token.
    """
    _check_columns(examples, ("question", "rationale", "answer"), "examples", "-")

    def convert(batch):
        return {
            "queries": [format_prompt(tokenizer, q, cot_trigger) for q in batch["question"]],
            "responses": [f" The answer is {a}." for a in batch["answer"]],
            "groundtruth": list(batch["answer"]),
        }

    return examples.map(convert, batched=True, remove_columns=["answer"], desc="Building prompts")


def load_task_dataset(name, split, tokenizer, dataset_config=None, dataset_path=None, sanity_check=False, seed=0):
    """Training/eval data with ``queries``/``responses``/``groundtruth``.

    Registered sets go through :func:`load_examples` and :func:`build_latro_dataset`;
    a custom local file is returned as-is (``groundtruth`` cast to ``str``).
    """
    if is_custom_path(name):
        ds = load_raw_dataset(name, split, dataset_config, dataset_path, sanity_check, seed)
        if ds.features["groundtruth"] != datasets.Value("string"):
            ds = ds.cast_column("groundtruth", datasets.Value("string"))
        return ds
    spec = get_dataset_spec(name)
    if spec.checker == CHECKER_NONE:
        raise ValueError(f"dataset {name!r} is raw text without answers; use load_examples() instead")
    examples = load_examples(name, split, dataset_config, dataset_path, sanity_check, seed)
    return build_latro_dataset(examples, tokenizer)


# --------------------------------------------------------------------------- wiki tasks (Markovian)

WIKI_TASKS = ("wiki_continuation", "wiki_compression")
"""Registry names built from wikitext by token slicing (see :func:`build_wiki_examples`)."""

_ARTICLE_TITLE_RE = re.compile(r"^ = [^=].* = \s*$")


def wikitext_articles(lines: list[str]) -> list[str]:
    """Join wikitext rows into articles; a level-1 heading (`` = Title = ``) starts a new one."""
    articles: list[list[str]] = []
    for line in lines:
        if _ARTICLE_TITLE_RE.match(line) or not articles:
            articles.append([])
        articles[-1].append(line)
    return [text for text in ("".join(a).strip() for a in articles) if text]


def build_wiki_examples(lines: list[str], tokenizer, task: str, question_length: int, target_length: int,
                        dataset: str = "wikitext", split: str = "-") -> datasets.Dataset:
    """Token-sliced examples from wikitext rows (no per-model ids: slicing uses ``tokenizer``).

    * ``wiki_continuation``: question = ``question_length`` tokens of an article, answer = the
      next ``target_length`` tokens.
    * ``wiki_compression``: question = answer = a chunk of ``question_length`` tokens (the CoT
      must carry enough to reconstruct it).
    Every article yields consecutive non-overlapping chunks; texts are decoded and stripped.
    """
    if task not in WIKI_TASKS:
        raise ValueError(f"build_wiki_examples: task {task!r} must be one of {WIKI_TASKS}")
    chunk = question_length + (target_length if task == "wiki_continuation" else 0)
    out = {"question": [], "rationale": [], "answer": []}
    for article in wikitext_articles(lines):
        ids = tokenizer(article, add_special_tokens=False).input_ids
        for start in range(0, len(ids) - chunk + 1, chunk):
            question = ids[start : start + question_length]
            answer = ids[start + question_length : start + chunk] if task == "wiki_continuation" else question
            out["question"].append(tokenizer.decode(question, skip_special_tokens=True).strip())
            out["answer"].append(tokenizer.decode(answer, skip_special_tokens=True).strip())
            out["rationale"].append("")
    if not out["question"]:
        raise ValueError(
            f"dataset {dataset!r} split {split!r}: no article has {chunk} tokens for {task} "
            f"(question_length={question_length}, target_length={target_length}); lower them or add data"
        )
    return datasets.Dataset.from_dict(out)


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
_MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                  "number_theory", "prealgebra", "precalculus")

for _spec in (
    DatasetSpec("gsm8k", "openai/gsm8k", "main", dict(_OUR_SPLITS_TRAIN_TEST),
                ("question", "answer"), _gsm8k_example, CHECKER_NUMERIC),
    DatasetSpec("math", "EleutherAI/hendrycks_math", "all", dict(_OUR_SPLITS_TRAIN_TEST),
                ("problem", "level", "type", "solution"), _math_example, CHECKER_MATH,
                config_groups={"all": _MATH_SUBJECTS}),
    DatasetSpec("arc_challenge", "allenai/ai2_arc", "ARC-Challenge",
                {"train": "train", "eval": "validation", "test": "test"},
                ("id", "question", "choices", "answerKey"), _arc_example, CHECKER_MULTIPLE_CHOICE),
    DatasetSpec("mmlu", "cais/mmlu", "all",
                {"train": "auxiliary_train", "eval": "validation", "test": "test"},
                ("question", "subject", "choices", "answer"), _mmlu_example, CHECKER_MULTIPLE_CHOICE),
    # MMMLU ships only a test split: we carve disjoint train/eval/test slices from it.
    DatasetSpec("mmmlu", "openai/MMMLU", "YO_NG",
                {"train": "test[:80%]", "eval": "test[80%:90%]", "test": "test[90%:]"},
                ("Question", "A", "B", "C", "D", "Answer", "Subject"), _mmmlu_example, CHECKER_MULTIPLE_CHOICE),
    DatasetSpec("wikitext", "Salesforce/wikitext", "wikitext-103-raw-v1",
                {"train": "train", "eval": "validation", "test": "test"},
                ("text",), _wikitext_example, CHECKER_NONE),
    # Markovian wiki tasks: the wikitext rows, sliced by tokens in load_markovian_examples.
    *(DatasetSpec(_task, "Salesforce/wikitext", "wikitext-103-raw-v1",
                  {"train": "train", "eval": "validation", "test": "test"},
                  ("text",), _wikitext_example, CHECKER_NONE) for _task in WIKI_TASKS),
    DatasetSpec("arithmetic", None, None, {s: s for s in GENERATED_SPLIT_SIZES},
                ("terms",), _arithmetic_example, CHECKER_NUMERIC, generator=generate_arithmetic),
    DatasetSpec("arithmetic_negative", None, None, {s: s for s in GENERATED_SPLIT_SIZES},
                ("terms",), _arithmetic_example, CHECKER_NUMERIC, generator=generate_arithmetic_negative),
):
    register_dataset(_spec)
del _spec
