"""Where each registered data set's rows come from: per-dataset row converters and generators.

Pure functions, no registry: :mod:`implicit_reasoning.data.registry` wires them into
:class:`~implicit_reasoning.data.registry.DatasetSpec` entries. A converter maps one raw
row with its hub schema to ``{"question", "rationale", "answer"}`` and raises
:class:`GoldAnswerError` when the gold answer cannot be parsed.

Generated sets (``arithmetic``, ``arithmetic_negative``) draw each split from its own seed,
``3 * seed + {train: 0, eval: 1, test: 2}``, so splits never share a random stream.
"""

from __future__ import annotations

import random
import re

import datasets

GENERATED_SPLIT_SEED_OFFSETS = {"train": 0, "eval": 1, "test": 2}
"""Per-split seed offset for generated sets: the split's RNG seed is ``3 * seed + offset``."""

CHOICE_LETTERS = "ABCDE"


class GoldAnswerError(ValueError):
    """A raw row whose gold answer cannot be parsed (re-raised with dataset/split/row)."""


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


def gsm8k_example(row: dict) -> dict:
    text = row["answer"]
    if "####" not in text:
        raise GoldAnswerError("column 'answer' has no '####' gold-answer marker")
    rationale, gold = text.rsplit("####", 1)
    gold = gold.strip().replace(",", "")
    if not gold:
        raise GoldAnswerError("column 'answer' has nothing after '####'")
    rationale = re.sub(r"<<[^>]*>>", "", rationale).strip()
    return {"question": row["question"].strip(), "rationale": rationale, "answer": gold}


def math_example(row: dict) -> dict:
    gold = last_boxed_content(row["solution"])
    if not gold:
        raise GoldAnswerError("column 'solution' has no (balanced, non-empty) \\boxed{...} answer")
    return {"question": row["problem"].strip(), "rationale": row["solution"].strip(), "answer": gold}


def arc_example(row: dict) -> dict:
    labels, texts = row["choices"]["label"], row["choices"]["text"]
    if len(labels) != len(texts) or not labels:
        raise GoldAnswerError(f"column 'choices' has {len(labels)} labels but {len(texts)} texts")
    letters = [_choice_letter(label) for label in labels]
    gold = _choice_letter(row["answerKey"])
    if gold not in letters:
        raise GoldAnswerError(f"answerKey {row['answerKey']!r} is not one of the labels {labels}")
    return {"question": _choices_question(row["question"], letters, texts), "rationale": "", "answer": gold}


def mmlu_example(row: dict) -> dict:
    choices = list(row["choices"])
    try:
        index = int(row["answer"])
    except (TypeError, ValueError):
        raise GoldAnswerError(f"column 'answer' {row['answer']!r} is not an integer index") from None
    if not 0 <= index < len(choices):
        raise GoldAnswerError(f"column 'answer' {index} is out of range for {len(choices)} choices")
    letters = list(CHOICE_LETTERS[: len(choices)])
    return {"question": _choices_question(row["question"], letters, choices), "rationale": "", "answer": letters[index]}


def mmmlu_example(row: dict) -> dict:
    gold = str(row["Answer"]).strip().upper()
    if gold not in "ABCD" or len(gold) != 1:
        raise GoldAnswerError(f"column 'Answer' {row['Answer']!r} is not a letter A-D")
    texts = [str(row[letter]) for letter in "ABCD"]
    return {"question": _choices_question(row["Question"], list("ABCD"), texts), "rationale": "", "answer": gold}


def wikitext_example(row: dict) -> dict:
    return {"question": row["text"], "rationale": "", "answer": ""}


# Raw-text sets for PPO data mixtures: the text goes to "question", rationale and answer stay empty.


def cnn_dailymail_example(row: dict) -> dict:
    """The news article (column ``article``); the ``highlights`` summary is not used."""
    return {"question": row["article"].strip(), "rationale": "", "answer": ""}


def daily_dialog_example(row: dict) -> dict:
    """The dialog's turns (column ``dialog``), each stripped, joined with newlines."""
    turns = [str(turn).strip() for turn in row["dialog"]]
    return {"question": "\n".join(turn for turn in turns if turn), "rationale": "", "answer": ""}


def europarl_example(row: dict) -> dict:
    """The English side of a Europarl sentence pair (column ``translation``)."""
    pair = {lang: text for lang, text in (row["translation"] or {}).items() if text is not None}
    if "en" not in pair:
        raise ValueError(f"column 'translation' has no 'en' side (languages present: {sorted(pair)})")
    return {"question": pair["en"].strip(), "rationale": "", "answer": ""}


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


SYNTHETIC_TEXT_KINDS = ("constant", "random", "counting", "sums")
_WORDS = ("the", "cat", "dog", "sat", "ran", "on", "under", "a", "mat", "tree", "big", "small", "red", "blue",
          "and", "then", "slept", "jumped", "over", "house")


def generate_synthetic_text(split: str, n: int, seed: int, kind: str = "counting", length: int = 40) -> list[dict]:
    """``n`` rows ``{"text": ...}`` of about ``length`` words each, of one ``kind`` (offline test/demo text):

    * ``constant``: one fixed sentence, repeated (nothing left to learn);
    * ``random``: words drawn uniformly from a 20-word list (nothing learnable beyond the unigram);
    * ``counting``: arithmetic progressions "7 10 13 16 ..." (a pattern a model can learn);
    * ``sums``: worked running sums "12 + 5 = 17. 17 + 9 = 26. ..." (learnable, as in the demo task).
    """
    if kind not in SYNTHETIC_TEXT_KINDS:
        raise ValueError(f"synthetic_text: kind must be one of {SYNTHETIC_TEXT_KINDS}, got {kind!r}")
    if not isinstance(length, int) or length < 2:
        raise ValueError(f"synthetic_text: length must be an integer >= 2, got {length!r}")
    rng = split_rng(split, seed)
    rows = []
    for _ in range(n):
        if kind == "constant":
            words = ("the cat sat on the mat and then slept . " * length).split()[:length]
        elif kind == "random":
            words = [rng.choice(_WORDS) for _ in range(length)]
        elif kind == "counting":
            start, step = rng.randint(1, 20), rng.randint(1, 5)
            words = [str(start + i * step) for i in range(length)]
        else:
            total, words = rng.randint(1, 20), []
            while len(words) < length:
                term = rng.randint(1, 9)
                words += [str(total), "+", str(term), "=", f"{total + term}."]
                total += term
        rows.append({"text": " ".join(words)})
    return rows


def _format_term(value: int) -> str:
    return f"(-{abs(value)})" if value < 0 else str(value)


def arithmetic_example(row: dict) -> dict:
    terms = [int(t) for t in row["terms"]]
    if not terms:
        raise GoldAnswerError("column 'terms' is empty")
    steps, total = [], terms[0]
    for term in terms[1:]:
        steps.append(f"{_format_term(total)} + {_format_term(term)} = {_format_term(total + term)}.")
        total += term
    question = " + ".join(_format_term(t) for t in terms)
    return {"question": question, "rationale": " ".join(steps), "answer": str(total)}


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
