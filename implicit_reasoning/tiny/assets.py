"""Offline demo assets: a tiny tokenizer and causal LM that the package builds itself.

Nothing here touches a model hub.  :func:`build_demo_tokenizer` trains a small
byte-level BPE tokenizer on :func:`demo_corpus` (synthetic arithmetic with worked
rationales), deterministically; :func:`build_demo_model` builds a randomly
initialised (seeded) ``LlamaForCausalLM`` sized for a 2-core CPU.

Example of the demo task (``DEMO_TASK = "arithmetic"``)::

    prompt    "Question: 12 + 35 + 8\\nLet's think step by step.\\n"
    rationale "12 + 35 = 47. 47 + 8 = 55."
    response  " The answer is 55."

Rationale and response are tokenized separately and the ids concatenated:
``ids(prompt) + ids(rationale) + ids(response) + [eos]``.  Because the
byte-level pre-tokenizer splits before every space-prefixed word / number,
``ids(a) + ids(b) == ids(a + b)`` for these strings (tested).

Tokenizer conventions
---------------------
* Special tokens ``<pad>`` (id 0), ``<s>`` (1), ``</s>`` (2), ``<unk>`` (3) are
  registered as pad / bos / eos / unk.
* Encoding adds NO special tokens: ``tokenizer("...").input_ids`` contains
  neither bos nor eos, whatever ``add_special_tokens`` says.  Callers that want
  an eos after the answer append ``tokenizer.eos_token_id`` themselves.
* No chat template: prompts are plain text.
* ``decode(encode(text)) == text`` exactly (no prefix space is added on encode,
  and ``clean_up_tokenization_spaces`` is off).
* Every integer with one or two digits is a single token both with and without
  a leading space (``"47"`` and ``" 47"``); longer numbers take two or more.
* ``model_max_length`` is left unset (no silent truncation); the demo model's
  ``max_position_embeddings`` (default 256) is the practical limit.
"""

from __future__ import annotations

import os
import random

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

__all__ = [
    "DEMO_TASK",
    "DEMO_DATASET_CONFIG",
    "DEMO_SPECIAL_TOKENS",
    "DEMO_VOCAB_SIZE",
    "demo_corpus",
    "build_demo_tokenizer",
    "build_demo_model",
]

DEMO_TASK = "arithmetic"  # registry name used by the demo
DEMO_DATASET_CONFIG = "num_terms=3,max_value=10"  # default demo data-set config

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<s>", "</s>", "<unk>"
DEMO_SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN]  # ids 0, 1, 2, 3
DEMO_VOCAB_SIZE = 600  # target size for the BPE trainer (256 bytes + specials + merges)
_SMALL_NUMBER_REPEATS = 30

# Prompt styles the trainers / registry may use for the arithmetic tasks.  The
# corpus only has to *cover* these strings so that they tokenize compactly; any
# other text still encodes (byte-level fallback, never <unk>).
_INSTRUCTIONS = [
    "Produce minimal text which will help you answer the question.",
    "Solve the problem step by step.",
    "Think step by step, then give the answer.",
    "Compute the sum.",
    "Add the numbers.",
]


def _num(n: int) -> str:
    """Integer as written in the arithmetic tasks: negatives are "(-n)"."""
    return f"(-{-n})" if n < 0 else str(n)


def _rationale(terms: list[int]) -> tuple[str, int]:
    """Left-to-right running sum, e.g. "12 + 35 = 47. 47 + 8 = 55."."""
    total = terms[0]
    steps = []
    for t in terms[1:]:
        new = total + t
        steps.append(f"{_num(total)} + {_num(t)} = {_num(new)}.")
        total = new
    if not steps:  # a single term: nothing to add
        steps.append(f"{_num(total)} = {_num(total)}.")
    return " ".join(steps), total


def _example(rng: random.Random) -> str:
    negative = rng.random() < 0.3
    if rng.random() < 0.8:
        num_terms = rng.randint(2, 5)
    else:
        num_terms = rng.randint(6, 15)
    max_value = rng.choice([9, 20, 50, 99])
    if negative:
        terms = [rng.choice([-1, 1]) * rng.randint(1, max_value) for _ in range(num_terms)]
    else:
        terms = [rng.randint(1, max_value) for _ in range(num_terms)]
    question = " + ".join(_num(t) for t in terms)
    rationale, answer = _rationale(terms)
    ans = _num(answer)
    style = rng.randrange(5)
    if style == 0 or style == 1:  # LaTRO-style (the demo's main format)
        return f"Question: {question}\nLet's think step by step.\n" + rationale + f" The answer is {ans}."
    if style == 2:  # Markovian-style
        instr = rng.choice(_INSTRUCTIONS)
        q = "<Redacted>" if rng.random() < 0.5 else question
        return f"{instr} {q}\nReasoning: " + rationale + f" Answer: {ans}"
    if style == 3:  # STaR-style, last line "Answer: X"
        return f"Question: {question}\nLet's think step by step.\n" + rationale + f"\nAnswer: {ans}"
    # GSM8K-style gold answer
    return f"Question: {question}\nAnswer: {rationale}\n#### {ans}"


def demo_corpus(num_examples: int = 3000, seed: int = 0) -> list[str]:
    """Deterministic training texts for the demo tokenizer.

    Covers every string the demo produces: prompts ("Question: ...\\nLet's think
    step by step.\\n", Markovian "...\\nReasoning:" / "<Redacted>"), rationales
    ("12 + 35 = 47. 47 + 8 = 55."), responses (" The answer is 55.",
    "Answer: 55", "#### 55") and every integer in -300..300, with negatives both
    as "(-n)" and "-n", with and without a leading space.
    """
    rng = random.Random(seed)
    texts = [_example(rng) for _ in range(num_examples)]
    # Small numbers are what a tiny model has to learn to add: make every 0..99
    # frequent with and without a leading space so BPE gives each a single
    # token before it spends merges on three-digit numbers.
    for _ in range(_SMALL_NUMBER_REPEATS):
        for n in range(100):
            texts.append(f"{n} + 0 = {n}.")
    for n in range(-300, 301):
        s = _num(n)
        texts.append(f"{n} {s}. The answer is {s}. Answer: {s}\nThe answer is {n}.\nAnswer: {n}")
    return texts


def build_demo_tokenizer(save_dir: str | None = None) -> transformers.PreTrainedTokenizerFast:
    """Train the demo byte-level BPE tokenizer (deterministic, offline, < 1 s).

    Special tokens <pad>/<s>/</s>/<unk> get ids 0/1/2/3.  No special tokens are
    added on encode and there is no chat template.  If ``save_dir`` is given the
    tokenizer is also ``save_pretrained`` there (loadable with
    ``AutoTokenizer.from_pretrained(save_dir)``).
    """
    backend = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=DEMO_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(DEMO_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(demo_corpus(), trainer=trainer)

    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        add_bos_token=False,
        add_eos_token=False,
        add_prefix_space=False,
        clean_up_tokenization_spaces=False,
        padding_side="right",
    )
    tokenizer.chat_template = None
    if save_dir is not None:
        os.makedirs(save_dir, exist_ok=True)
        tokenizer.save_pretrained(save_dir)
    return tokenizer


def build_demo_model(
    tokenizer,
    num_layers: int = 2,
    hidden_size: int = 128,
    num_heads: int = 4,
    intermediate_size: int = 512,
    max_position_embeddings: int = 256,
    seed: int = 0,
) -> transformers.PreTrainedModel:
    """A tiny randomly initialised ``LlamaForCausalLM`` for ``tokenizer``.

    Initialisation is seeded (``seed``) without disturbing the global torch RNG.
    The vocabulary is ``len(tokenizer)``; pad/bos/eos ids come from the tokenizer
    and are written to both the model config and its generation config.  Input
    and output embeddings are tied (default size: about 0.6 M parameters).  The
    model is returned in eval mode, float32, with the default (sdpa) attention.
    """
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        initializer_range=0.02,
        rms_norm_eps=1e-6,
        use_cache=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.eval()
    return model
