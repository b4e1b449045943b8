"""STaR (Zelikman et al., arXiv 2203.14465) as pure functions: the step schedule, filtering,
rationalization hints, DPO pairs, the update's rows and token normaliser, and a degeneration measure.

A generation record is a dict with at least ``question_index``, ``prompt`` (the hint-free
prompt), ``rationale`` (the generated completion: reasoning and the final answer line),
``prediction`` (the extracted answer), ``correct`` and ``hinted`` (generated with the gold
answer as a hint: a rationalization); and ``finished`` / ``end_token_id``: whether the sample
ended with an end-of-text token, and which (None when it was cut off at response_length).
Records without them (files of older versions) count as finished with the tokenizer's eos.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from itertools import product

HINT_TEMPLATE = "(Hint: the correct answer is {answer}.)"
DEGENERATE_COVERAGE = 0.5  # share of a text's tokens covered by its most repeated n-gram
DEGENERATE_MIN_TOKENS = 8
MAX_NGRAM = 4


# ------------------------------------------------------------------------------ schedule
def step_schedule(num_iterations: int, start_steps: int, step_growth: float) -> list[int]:
    """Optimizer steps of each iteration: floor(start_steps * step_growth ** n), at least 1 (STaR: 40, +20 %)."""
    return [max(1, math.floor(start_steps * step_growth**n + 1e-9)) for n in range(num_iterations)]


def locate_step(step: int, schedule: list[int]) -> tuple[int, int]:
    """(iteration, step within it) of a 0-based global optimizer step."""
    for iteration, steps in enumerate(schedule):
        if step < steps:
            return iteration, step
        step -= steps
    raise ValueError(f"step is past the schedule's {sum(schedule)} steps")


# ----------------------------------------------------------------------- filter and hints
def with_hint(user_text: str, answer: str) -> str:
    """The rationalization prompt's user text: the question with the gold answer given as a hint."""
    return f"{user_text}\n{HINT_TEMPLATE.format(answer=answer)}"


def is_finished(record: dict) -> bool:
    """Whether the sample ended with an end-of-text token; one cut off at response_length is never trained on (its
    answer line may be missing, and the model never produced an end-of-text token to train on)."""
    return record.get("finished", True)


def kept(records: list[dict]) -> list[dict]:
    """The correct, finished records (rationalized ones included), in order."""
    return [r for r in records if r["correct"] and is_finished(r)]


def unsolved(records: list[dict]) -> list[int]:
    """Indices of the questions none of whose (hint-free) samples is kept, sorted."""
    solved = {r["question_index"] for r in kept(records) if not r["hinted"]}
    return sorted({r["question_index"] for r in records} - solved)


def dpo_pairs(records: list[dict]) -> list[tuple[dict, dict]]:
    """Every (correct, incorrect) pair of the same question; questions with one outcome only give none.

    A correct rationalization (stored with the hint-free prompt) is a correct sample of its
    question: it is what makes pairs for the questions the policy never solves on its own.
    Rationalization keeps only correct samples, so every incorrect one is hint-free. Samples cut
    off at response_length take part in no pair.
    """
    by_question: dict[int, list[dict]] = {}
    for record in filter(is_finished, records):
        by_question.setdefault(record["question_index"], []).append(record)
    pairs = []
    for index in sorted(by_question):
        group = by_question[index]
        winners = [r for r in group if r["correct"]]
        losers = [r for r in group if not r["correct"]]
        pairs.extend(product(winners, losers))
    return pairs


# --------------------------------------------------------------------------------- updates
def update_rows(order: list[int], update: int, per_update: int) -> list[int]:
    """The examples of update `update` in serving order: the next `per_update` entries of the permutation `order`,
    cycled (no example twice before all have been used). Micro-step m of process r serves entries
    [(m P + r) b, (m P + r + 1) b) of them (b rows per micro-batch, P processes)."""
    start = update * per_update
    return [order[(start + t) % len(order)] for t in range(per_update)]


# ---------------------------------------------------------------------------- degeneration
# scripts written without spaces between words (Thai, Lao, Myanmar, Khmer, kana, CJK ideographs): one token per
# character, whatever punctuation separates the runs ("的的的，的的的。" is 6 tokens, not 2 "words")
_UNSPACED_RE = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3005\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
                          r"\uf900-\ufaff\uff66-\uff9f]")


def _tokens(text: str) -> list[str]:
    """Words of spaced scripts and characters of unspaced ones, after NFC and lower-casing; a combining mark stays
    with what it marks (Yoruba's ẹ̀ has no precomposed form: e, dot below, grave; Thai vowel signs). A text with
    a single long word (an unspaced script not listed) or no word at all ("\\n" x 40, "......") gives its
    characters: what repeats is the characters themselves."""
    text = unicodedata.normalize("NFC", text).lower()
    tokens: list[str] = []
    word, attached = "", False  # the word being read; whether the last character read belongs to a token
    for char in text:
        if unicodedata.category(char).startswith("M"):  # a combining mark: part of the token before it
            if word:
                word += char
            elif attached:
                tokens[-1] += char
            continue
        unspaced = bool(_UNSPACED_RE.match(char))
        in_word = (char.isalnum() or char == "_") and not unspaced
        if word and not in_word:
            tokens.append(word)
            word = ""
        if in_word:
            word += char
        elif unspaced:
            tokens.append(char)
        attached = in_word or unspaced
    tokens += [word] if word else []
    if len(tokens) <= 1 and len(text.strip()) > DEGENERATE_MIN_TOKENS or not tokens:
        tokens = [c for c in text if not c.isspace()] or list(text)
    return tokens


def repetition_coverage(text: str) -> float:
    """The largest share of the text's tokens covered by occurrences of one repeated n-gram (n = 1..4).

    "ṣe ṣe ṣe ṣe" is covered entirely by "ṣe"; a healthy sentence is covered a little by its
    most frequent word. Overlapping occurrences are counted once.
    """
    tokens = _tokens(text)
    if not tokens:
        return 0.0
    best = 0.0
    for n in range(1, min(MAX_NGRAM, len(tokens)) + 1):
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        gram, count = Counter(grams).most_common(1)[0]
        if count < 2:  # nothing of this length repeats
            continue
        covered, next_free = 0, 0
        for i, g in enumerate(grams):
            if g == gram and i >= next_free:
                covered += n
                next_free = i + n
        best = max(best, covered / len(tokens))
    return best


def is_degenerate(text: str, coverage: float = DEGENERATE_COVERAGE, min_tokens: int = DEGENERATE_MIN_TOKENS) -> bool:
    """Whether one repeated token or n-gram dominates the text (covers at least `coverage` of it)."""
    return len(_tokens(text)) >= min_tokens and repetition_coverage(text) >= coverage


def degeneration_rate(texts: list[str]) -> float:
    """Share of texts that are degenerate (0 for no texts)."""
    return sum(is_degenerate(t) for t in texts) / max(len(texts), 1)
