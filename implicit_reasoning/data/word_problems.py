"""A generated multi-step word-problem task in GSM8K's shape (registry name ``word_problems``).

Every question tells a short story about one person and one kind of item, 2-3 steps that
add, take away or buy packs of the item, then asks how many are left::

    Mia has 14 stickers. She buys 3 packs with 4 stickers in each. Then she gives 6 stickers
    to her brother. How many stickers does Mia have now?

The gold rationale works it out one step per sentence ("Mia starts with 14 stickers. 3 packs
of 4 are 3 * 4 = 12 stickers, so she has 14 + 12 = 26. After giving away 6 she has 26 - 6 = 20.")
and the answer is a positive integer. Rows are drawn from the split's own seed (``3 * seed +
{train: 0, eval: 1, test: 2}``, as for the other generated sets), so the same seed always gives
the same questions. Parameters (``dataset_config``, e.g. ``"min_steps=2,max_steps=3"``):
``min_steps`` / ``max_steps`` (steps per story) and ``max_start`` (largest starting amount).
"""

from __future__ import annotations

import random

from .sources import split_rng

NAMES = (("Tom", "he", "his"), ("Mia", "she", "her"), ("Ben", "he", "his"), ("Anna", "she", "her"),
         ("Sam", "he", "his"), ("Lily", "she", "her"), ("Leo", "he", "his"), ("Emma", "she", "her"),
         ("Max", "he", "his"), ("Zoe", "she", "her"), ("Jack", "he", "his"), ("Lucy", "she", "her"))
ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "shells", "stamps", "coins")
RELATIVES = ("friend", "brother", "sister", "teacher", "neighbor", "cousin")
OPERATIONS = ("add", "take", "packs")


def _add(rng: random.Random, total: int, item: str, pronoun: str, possessive: str,
         max_amount: int) -> tuple[int, str, str]:
    amount = rng.randint(2, max_amount)
    verb, past = rng.choice((("buys", "buying"), ("finds", "finding"), ("gets", "getting")))
    story = f"{pronoun.capitalize()} {verb} {amount} more {item}."
    work = f"After {past} {amount} more, {pronoun} has {total} + {amount} = {total + amount}."
    return total + amount, story, work


def _take(rng: random.Random, total: int, item: str, pronoun: str, possessive: str,
          max_amount: int) -> tuple[int, str, str]:
    amount = rng.randint(1, min(total - 1, max_amount))
    relative = rng.choice(RELATIVES)
    verb, past = rng.choice(((f"gives {{n}} {item} to {possessive} {relative}", "giving away"),
                             (f"loses {{n}} {item}", "losing"), (f"sells {{n}} {item}", "selling")))
    story = f"Then {pronoun} {verb.format(n=amount)}."
    work = f"After {past} {amount}, {pronoun} has {total} - {amount} = {total - amount}."
    return total - amount, story, work


def _packs(rng: random.Random, total: int, item: str, pronoun: str, possessive: str,
           max_amount: int) -> tuple[int, str, str]:
    packs, each = rng.randint(2, 3), rng.randint(2, min(5, max_amount))
    story = f"{pronoun.capitalize()} buys {packs} packs with {each} {item} in each."
    work = (f"{packs} packs of {each} are {packs} * {each} = {packs * each} {item}, so {pronoun} has "
            f"{total} + {packs * each} = {total + packs * each}.")
    return total + packs * each, story, work


_STEPS = {"add": _add, "take": _take, "packs": _packs}


def word_problem(rng: random.Random, num_steps: int, max_start: int = 20, max_amount: int = 12,
                 packs: int = 1) -> dict:
    """One story of ``num_steps`` steps: ``{"question", "rationale", "answer"}`` (the answer is > 0).

    The last step always takes items away (so the answer is not simply the running sum), the
    ones before add or buy packs.
    """
    name, pronoun, possessive = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    total = rng.randint(5, max_start)
    story, work = [f"{name} has {total} {item}."], [f"{name} starts with {total} {item}."]
    kinds = [rng.choice(("add", "packs") if packs else ("add",)) for _ in range(num_steps - 1)] + ["take"]
    for kind in kinds:
        total, sentence, step = _STEPS[kind](rng, total, item, pronoun, possessive, max_amount)
        story.append(sentence)
        work.append(step)
    story.append(f"How many {item} does {name} have now?")
    return {"question": " ".join(story), "rationale": " ".join(work), "answer": str(total)}


def generate_word_problems(split: str, n: int, seed: int, min_steps: int = 2, max_steps: int = 3,
                           max_start: int = 20, max_amount: int = 12, packs: int = 1) -> list[dict]:
    """``n`` rows ``{"question", "rationale", "answer"}`` of ``min_steps``..``max_steps`` steps each."""
    for name, value in (("min_steps", min_steps), ("max_steps", max_steps), ("max_start", max_start)):
        if not isinstance(value, int) or value < (5 if name == "max_start" else 1):
            raise ValueError(f"word_problems: {name} must be an integer >= {5 if name == 'max_start' else 1}, "
                             f"got {value!r}")
    if min_steps > max_steps:
        raise ValueError(f"word_problems: min_steps={min_steps} is above max_steps={max_steps}")
    rng = split_rng(split, seed)
    return [word_problem(rng, rng.randint(min_steps, max_steps), max_start, max_amount, packs) for _ in range(n)]


def word_problem_example(row: dict) -> dict:
    """A generated row is already question / rationale / answer."""
    return {"question": row["question"], "rationale": row["rationale"], "answer": str(row["answer"])}
