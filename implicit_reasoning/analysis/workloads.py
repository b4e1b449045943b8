"""The benchmark's prompts (`--prompts_style`), the same rows for every trainer and for TRL.

* ``addition``: "Question: a + b / Let's think step by step." (14 tokens with the demo tokenizer), the
  answer " The answer is a+b." -- the project's original short workload.
* ``word_problems``: GSM8K-shaped two- and three-step word problems with 0-4 short sentences of scene-setting,
  so that prompts vary in length as real ones do; through the tokenizer's chat template (system prompt,
  user turn, generation prompt) when it has one (SmolLM2-135M-Instruct: 60-150 tokens), plain text with
  "Let's think step by step." otherwise. Deterministic: row i is the same in every run.

Each row has ``queries`` (the finished prompt text), ``messages`` (the same prompt as a chat, for TRL's
conversational format; None without a chat template), ``question`` (the bare question, for Markovian,
which builds its own prompt), ``responses`` (" The answer is N.") and ``groundtruth``.
"""

from __future__ import annotations

PROMPT_STYLES = ("addition", "word_problems")

NAMES = ("Mia", "Liam", "Sofia", "Noah", "Ava", "Omar", "Chen", "Priya", "Lucas", "Zara")
ITEMS = ("pencils", "stickers", "apples", "marbles", "cookies", "stamps", "beads", "cards")
SCENES = (
    "It is a sunny Saturday and the market has just opened.",
    "{name} planned this all week in a small notebook.",
    "The corner shop sells most things in packs of the same size.",
    "A friend from school came along to help carry everything.",
)
INSTRUCTION = "Think step by step and end with 'The answer is N.'"


def addition_rows(n: int) -> list[dict]:
    """Addition questions of 14 demo-tokenizer tokens (the project's original benchmark workload)."""
    rows = []
    for i in range(n):
        a, b = i % 7 + 1, i % 5 + 2
        question = f"{a} + {b}"
        rows.append({"queries": f"Question: {question}\nLet's think step by step.\n", "messages": None,
                     "question": question, "responses": f" The answer is {a + b}.", "groundtruth": str(a + b)})
    return rows


def word_problem(i: int) -> tuple[str, int]:
    """Word problem i (two or three arithmetic steps) and its integer answer."""
    name, friend = NAMES[i % len(NAMES)], NAMES[(i + 3) % len(NAMES)]
    item = ITEMS[i % len(ITEMS)]
    a, b, c, d = 5 + i % 11, 2 + i % 4, 6 + i % 7, 1 + i % 5
    kind = i % 3
    if kind == 0:
        text = (f"{name} has {a} {item}. {name} buys {b} packs of {item} with {c} {item} in each pack, and then "
                f"gives {d} {item} to {friend}. How many {item} does {name} have now?")
        answer = a + b * c - d
    elif kind == 1:
        text = (f"{name} earns {a} dollars per hour, works {b} hours on Monday and {c} hours on Tuesday, and spends "
                f"{d} dollars on lunch. How many dollars does {name} have left from these two days?")
        answer = a * (b + c) - d
    else:
        students = b * c
        text = (f"A class of {students} students is split into groups of {b}. Each group gets {a} {item}, and the "
                f"teacher keeps {d} extra {item}. How many {item} are there in total?")
        answer = (students // b) * a + d
    scene = " ".join(s.format(name=name) for s in SCENES[: i % (len(SCENES) + 1)])
    return (f"{scene} {text}" if scene else text), answer


def word_problem_rows(n: int, tokenizer) -> list[dict]:
    """`n` word problems as prompts through `tokenizer`'s chat template (plain text when it has none)."""
    rows = []
    for i in range(n):
        question, answer = word_problem(i)
        content = f"{question}\n{INSTRUCTION}"
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": content}]
            queries = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            messages, queries = None, f"{content}\nLet's think step by step.\n"
        rows.append({"queries": queries, "messages": messages, "question": question,
                     "responses": f" The answer is {answer}.", "groundtruth": str(answer)})
    return rows


def workload_rows(style: str, n: int, tokenizer) -> list[dict]:
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompts_style={style!r}: choose one of {PROMPT_STYLES}")
    return addition_rows(n) if style == "addition" else word_problem_rows(n, tokenizer)
