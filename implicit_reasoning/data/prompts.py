"""The one prompt rule every trainer follows.

A trainer builds the *user text* of a prompt (LaTRO / SFT: ``"Question: {q}\\n{cot_trigger}"``;
Markovian: ``"{instruction} {q}"``) and optionally a *response prefix* that the model's
answer starts with (Markovian: ``"Reasoning:"``). Then:

* a tokenizer with a chat template (and ``use_chat_template=True``): the user text is one
  user turn of the template with the generation prompt, followed by the response prefix;
* otherwise plain text: the user text, a newline, the response prefix.

So a base model sees ``"Question: 3 + 4\\nLet's think step by step.\\n"`` and
``"{instruction} 3 + 4\\nReasoning:"``, and a chat model sees the same text inside its
template. Scoring contexts (the Markovian redacted prompt) go through the same rule, so a
CoT is always scored where it was generated.
"""

from __future__ import annotations

DEFAULT_COT_TRIGGER = "Let's think step by step."


def format_prompt(tokenizer, user_text: str, response_prefix: str = "", use_chat_template: bool = True) -> str:
    """The prompt string for ``user_text`` under the rule of this module."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": user_text}]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text + response_prefix
    return f"{user_text}\n{response_prefix}"


def question_text(question: str, cot_trigger: str = DEFAULT_COT_TRIGGER) -> str:
    """LaTRO / SFT / STaR user text: ``"Question: {question}"`` and the CoT trigger on the next line."""
    return f"Question: {question}\n{cot_trigger}" if cot_trigger else f"Question: {question}"
