"""Generation-based evaluation shared by every trainer and `scripts/evaluation.py`.

Greedy accuracy (or sampled, with `eval_temperature` > 0) and maj@k self-consistency
with `eval_num_samples` samples per question, scored by the dataset's answer checker.

A completion that reached the budget without an end-of-text token is *cut off*: it is
counted (`cut_off` per record, `cut_off_rate` in the summary) and read only from an answer
statement, not by the checker's fallback (the last number), unless `eval_cut_off_fallback`.
"""

from __future__ import annotations

from transformers import GenerationConfig

from ..generation.sampling import generate, sampling_config
from ..runtime.models import encode_prompt, end_of_text_ids
from .checkers import extract_answer, is_correct, majority_vote


def shard_indices(limit: int, process_index: int, num_processes: int) -> tuple[list[int], int]:
    """This process's rows of `range(limit)` (every `num_processes`-th), padded to the same length on every rank.

    Returns (indices, num_real): the first `num_real` are this rank's own rows, the rest repeat
    row 0 so that every rank makes the same number of generate / forward calls (ZeRO-3
    gathers parameters collectively, so a rank with fewer batches would hang the others).
    Callers drop the records of the padding rows.
    """
    own = list(range(process_index, limit, num_processes))
    per_rank = -(-limit // num_processes)  # ceil
    return own + [0] * (per_rank - len(own)), len(own)


def eval_generation_config(args, tokenizer, sample: bool, end_ids: list[int] | None = None) -> GenerationConfig:
    """Eval decoding: greedy, or sampled with the run's `eval_sampling()`; completions end at the model's
    end-of-text ids (`end_ids`, default the tokenizer's eos)."""
    settings = args.eval_sampling() if sample else {}
    end_ids = end_ids if end_ids is not None else end_of_text_ids(tokenizer)
    return sampling_config(args.eval_budget, tokenizer.pad_token_id, end_ids, greedy=not sample, **settings)


def evaluate_dataset(
    model,
    tokenizer,
    dataset,
    checker_name: str,
    args,
    process_index: int = 0,
    num_processes: int = 1,
    progress: bool = False,
) -> list[dict]:
    """Per-question records for this process's shard (every `num_processes`-th row).

    `checker_name` scores every row, except in a data mixture, whose rows name their dataset in `source`.
    """
    limit = len(dataset) if args.max_eval_samples is None else min(args.max_eval_samples, len(dataset))
    indices, num_real = shard_indices(limit, process_index, num_processes)
    if not indices:  # an empty eval set: the same on every rank
        return []
    rows = dataset.select(indices)
    prompts = [encode_prompt(tokenizer, q, args.max_prompt_length) for q in rows["queries"]]
    batch = args.per_device_eval_batch_size
    sample_first = args.eval_temperature > 0
    label = "generating" if progress else None
    end_ids = end_of_text_ids(tokenizer, model)
    config = eval_generation_config(args, tokenizer, sample_first, end_ids)
    ids = generate(model, prompts, config, batch, progress=label)
    first, cut = _decode(tokenizer, ids), cut_off_rows(ids, end_ids)
    k = args.eval_num_samples
    extra: list[list[str]] = [[] for _ in prompts]
    extra_cut: list[list[bool]] = [[] for _ in prompts]
    if k > 1:
        repeated = [p for p in prompts for _ in range(k)]
        config = eval_generation_config(args, tokenizer, True, end_ids)
        ids = generate(model, repeated, config, batch, progress=label and f"maj@{k} samples")
        texts, cuts = _decode(tokenizer, ids), cut_off_rows(ids, end_ids)
        extra = [texts[i * k : (i + 1) * k] for i in range(len(prompts))]
        extra_cut = [cuts[i * k : (i + 1) * k] for i in range(len(prompts))]
    # a mixture's rows carry their dataset (`source`): each is scored by its own checker
    checkers = rows["source"] if "source" in rows.column_names else [checker_name] * len(rows)
    fallback = getattr(args, "eval_cut_off_fallback", False)
    records = [_record(*row, fallback) for row in zip(checkers, indices, rows["queries"], rows["groundtruth"], first,
                                                      cut, extra, extra_cut)]
    return records[:num_real]


def cut_off_rows(ids, end_ids) -> list[bool]:
    """Per generated row (token ids, right-padded): True when it holds none of `end_ids` (the budget ran out)."""
    ends = set(int(i) for i in end_ids)
    return [not any(int(t) in ends for t in row) for row in ids]


def _decode(tokenizer, ids) -> list[str]:
    return tokenizer.batch_decode(ids, skip_special_tokens=True)


def _record(checker_name, index, query, gold, completion, cut_off, samples, samples_cut, fallback) -> dict:
    strict = cut_off and not fallback  # a cut-off completion: only an answer statement counts
    record = {
        "index": index,
        "query": query,
        "groundtruth": gold,
        "completion": completion,
        "cut_off": cut_off,
        "prediction": extract_answer(checker_name, completion, strict),
        "correct": is_correct(checker_name, completion, gold, strict),
    }
    if samples:
        record.update(majority_fields(checker_name, samples, gold, samples_cut, fallback))
    return record


def majority_fields(checker_name: str, samples: list[str], gold: str, cut_off: list[bool] | None = None,
                    fallback: bool = False) -> dict:
    """maj@k of one question: each sample's extracted answer (a `cut_off` one from its answer statement only, unless
    `fallback`), the majority answer, whether it is correct. `sample_cut_off` records which samples were cut off."""
    cut_off = cut_off or [False] * len(samples)
    predictions = [extract_answer(checker_name, s, cut and not fallback) for s, cut in zip(samples, cut_off)]
    vote = majority_vote(predictions)
    return {
        "samples": samples,
        "sample_cut_off": cut_off,
        "sample_predictions": predictions,
        "majority": vote,
        "majority_correct": vote is not None and is_correct(checker_name, f"The answer is {vote}", gold),
    }


def summarize_records(records: list[dict]) -> dict[str, float]:
    """accuracy (first completion), the share of first completions cut off by the budget, and maj@k (when samples
    were drawn) over all records."""
    n = max(len(records), 1)
    summary = {"accuracy": sum(r["correct"] for r in records) / n, "num_questions": float(len(records))}
    if records and "cut_off" in records[0]:
        summary["cut_off_rate"] = sum(r["cut_off"] for r in records) / n
    if records and "answer_logprob" in records[0]:  # Markovian: the scorer's mean log-prob of the answer
        summary["answer_logprob"] = sum(r["answer_logprob"] for r in records) / n
    if records and "degenerate" in records[0]:  # STaR: share of completions dominated by one repeated n-gram
        summary["degeneration_rate"] = sum(r["degenerate"] for r in records) / n
    if records and "samples" in records[0]:
        k = len(records[0]["samples"])
        summary[f"maj@{k}"] = sum(r["majority_correct"] for r in records) / n
    return summary
