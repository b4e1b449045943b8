"""The plumbing of PPOCurriculumTrainer, kept out of its algorithm file.

* the module Trainer trains: the policy and a value network (`value_model.py`), LoRA on both;
* rollout scoring: one no-grad pass of policy + value and one of the reference, per chunk;
* reward functions: config names / import paths / callables, and the frozen-model scorer
  behind `continuation_loglik`;
* saving (policy at the top level, value network in `value_model/`) and resuming from it;
* evaluation: answer accuracy (question/answer rows), repetition rate of the completions,
  the validation loss, and completions of `test_prompts` written to the output dir.
"""

from __future__ import annotations

import json
import os

import torch

from ...evaluation.accuracy import cut_off_rows, eval_generation_config, majority_fields, shard_indices
from ...evaluation.checkers import checker_for, is_correct
from ...generation.sampling import generate
from ...objectives import rewards
from ...runtime.models import (
    disable_dropout,
    encode_continuation,
    encode_prompt,
    end_of_text_ids,
    eval_mode,
    seeded,
)
from ...scoring.packing import pack_rows
from ...scoring.window import score_rows, window_logprobs
from ..core.curriculum import row_losses
from ..core.curriculum_config import normalize_entry
from ..core.metrics import SAMPLES_FILE
from .data import load_entry_rows
from .value_model import VALUE_DIR, PolicyAndValue, ValueModel, backbone_peft_config, load_weights

RESPONSE = 2
TEST_GENERATIONS_FILE = "test_generations.jsonl"


class PPOSupport:
    """Mixin of PPOCurriculumTrainer (listed before RolloutTrainer)."""

    step_log_files = (SAMPLES_FILE, TEST_GENERATIONS_FILE)  # a resume drops the rows logged after its checkpoint

    # ------------------------------------------------------------ the trained module
    def build_trained_module(self, policy, args):
        with seeded(args.seed, policy):  # the head and the adapters initialise from `seed`, like the policy's
            return PolicyAndValue(policy, self._value_network(policy, args))

    def _value_network(self, policy, args) -> ValueModel:
        """A copy of the policy's backbone; under peft (use_lora or peft_config) the base model's backbone with
        adapters of the policy's peft config (the same settings whichever way they were given)."""
        peft = self.peft_config_given
        if args.value_model_name_or_path or peft:
            value = ValueModel.from_pretrained(args.value_model_name_or_path or self.base_model_path, args)
        else:
            value = ValueModel.from_policy(policy)
        if peft:
            from peft import get_peft_model

            prefix = policy.get_base_model().base_model_prefix
            value.backbone = get_peft_model(value.backbone, backbone_peft_config(peft, prefix))
        if args.disable_dropout:
            disable_dropout(value)
        return value

    def policy_of(self, module):
        return module.policy if isinstance(module, PolicyAndValue) else module

    @torch.no_grad()
    def score_rollout(self, rows: dict, scored=None) -> tuple[torch.Tensor, ...]:
        """(old_logps, old_values, ref_logps, mask), each (B, W) float32 on CPU over the response columns.

        Column j is the response's j-th token (rows are aligned on the response; right-padded).
        Log-probs are of the distribution that sampled, softmax(logits / temperature), for the
        policy and the reference alike. ``scored`` (a `sample_scored` result) already holds the
        policy's: then only the value network and the reference run here.
        """
        response = rows["segment_ids"] == RESPONSE
        start = int(response.any(dim=0).nonzero()[0])  # rows are aligned: every response starts here
        width = rows["input_ids"].shape[1] - start
        mask = response[:, start:]
        module = self.accelerator.unwrap_model(self.model)
        reuse = scored is not None and scored.failure is None
        logps, values, ref_logps = [], [], []
        chunk, device, temperature = self.args.rollout_batch_size, self.accelerator.device, self.args.temperature
        for i in range(0, len(rows["input_ids"]), chunk):
            part = {k: v[i : i + chunk].to(device) for k, v in rows.items()}
            with eval_mode(module):
                if reuse:
                    values.append(_pad(module.values(part, part["segment_ids"] == RESPONSE)[:, 1:], width))
                else:
                    logp, _, value = module(part, part["segment_ids"] == RESPONSE, temperature)
                    logps.append(_pad(logp[:, 1:], width))
                    values.append(_pad(value[:, 1:], width))
            with self.reference_model() as ref:
                logp, _ = window_logprobs(ref, part, part["segment_ids"] == RESPONSE, temperature=temperature,
                                          shared_prefill=self.share_prefill)
                ref_logps.append(_pad(logp[:, 1:], width))
        old = torch.where(mask, scored.token_logps[:, :width], 0.0) if reuse else torch.cat(logps)
        return old, torch.cat(values), torch.cat(ref_logps), mask

    # ------------------------------------------------------------ rewards
    def with_sources(self, rows: dict[str, list]) -> dict[str, list]:
        """`rows` (columns as lists) with a `source` column: their own, else the one dataset of the run (`dataset_name`,
        or the single `datasets` entry): a dataset with only the required columns is checked by its checker."""
        if "source" in rows:
            return rows
        return {**rows, "source": [self.default_source()] * len(rows["prompt"])}

    def default_source(self) -> str:
        mixture = self.args.mixture
        if len(mixture) != 1:
            raise ValueError(f"{type(self).__name__}: rows without a `source` column in a run on {len(mixture)} "
                             "datasets: which answer checker applies is unknown; load them with load_split")
        return mixture[0]["name"]

    def build_rewards(self, funcs=None) -> tuple[list, list[str]]:
        """The reward callables and their logged names, from `funcs` (callables) or `reward_funcs` (names)."""
        specs = list(funcs) if funcs is not None else list(self.args.reward_funcs)
        built, names = [], []
        for spec in specs:
            if callable(spec):
                func, name = spec, rewards.reward_name(spec)
            elif spec in rewards.BUILTIN_REWARDS:
                func, name = rewards.BUILTIN_REWARDS[spec], spec
            elif spec in rewards.MODEL_REWARDS:
                func, name = rewards.MODEL_REWARDS[spec](self._continuation_scorer), spec
            else:
                func, name = rewards.import_reward(spec), spec
            built.append(func)
            names.append(name if name not in names else f"{name}_{len(names)}")
        weights = self.args.reward_weights or [1.0] * len(built)
        if len(weights) != len(built):
            raise ValueError(f"reward_weights has {len(weights)} entries for {len(built)} reward functions")
        self.reward_weights = [float(w) for w in weights]
        return built, names

    def _continuation_scorer(self, prompts: list[str], completion_ids: list[list[int]],
                             continuations: list[str]) -> torch.Tensor:
        """Mean log-prob per token of each continuation after prompt + completion, under the frozen reference."""
        x = [encode_prompt(self.processing_class, p, self.args.max_prompt_length) for p in prompts]
        z = [[t for t in ids if t not in self.stop_ids] for ids in completion_ids]
        c = [encode_continuation(self.processing_class, text) for text in continuations]
        rows = pack_rows([x, z, c], self.processing_class.pad_token_id, align=2)
        with self.reference_model() as ref:
            return score_rows(ref, rows, (3,), self.args.rollout_batch_size, reduce="mean",
                              shared_prefill=self.share_prefill)[3]

    # ------------------------------------------------------------ save / resume
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """The policy as a causal LM (or LoRA adapter) dir, the value network in `value_model/`, the run config."""
        output_dir = output_dir or self.args.output_dir
        module = self.accelerator.unwrap_model(self.model)
        state = self.accelerator.get_state_dict(self.deepspeed) if self.is_deepspeed_enabled else None
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        module.policy.save_pretrained(output_dir, state_dict=_part(state, "policy."))
        module.value.save_pretrained(os.path.join(output_dir, VALUE_DIR), state_dict=_part(state, "value."))
        self.processing_class.save_pretrained(output_dir)
        self._save_run_config(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Trainer's resume would load a policy-only file into the policy + value module: load each part."""
        module = self.accelerator.unwrap_model(model if model is not None else self.model)
        load_weights(module.policy, resume_from_checkpoint)
        load_weights(module.value, os.path.join(resume_from_checkpoint, VALUE_DIR))

    def _load_best_model(self) -> None:
        if self.is_deepspeed_enabled:
            return super()._load_best_model()
        self._load_from_checkpoint(self.state.best_model_checkpoint)

    # ------------------------------------------------------------ evaluation
    def evaluation_records(self, model, dataset) -> list[dict]:
        """One completion per eval prompt: its answer's correctness (question/answer rows) and repetition rate."""
        args, tokenizer = self.args, self.processing_class
        limit = len(dataset) if args.max_eval_samples is None else min(args.max_eval_samples, len(dataset))
        indices, num_real = shard_indices(limit, self.accelerator.process_index, self.accelerator.num_processes)
        if not indices:
            return []
        rows = dataset.select(indices)
        sources = rows["source"] if "source" in rows.column_names else [self.default_source()] * len(rows)
        end_ids, strict = end_of_text_ids(tokenizer, model), not args.eval_cut_off_fallback
        ids = self._complete(model, rows["prompt"], sample=args.eval_temperature > 0)
        texts, cut = tokenizer.batch_decode(ids, skip_special_tokens=True), cut_off_rows(ids, end_ids)
        k = args.eval_num_samples  # maj@k over k sampled completions of each question/answer row
        sample_ids = self._complete(model, [p for p in rows["prompt"] for _ in range(k)], True) if k > 1 else []
        samples = tokenizer.batch_decode(sample_ids, skip_special_tokens=True) if k > 1 else []
        samples_cut = cut_off_rows(sample_ids, end_ids)
        records = []
        for i, index in enumerate(indices[:num_real]):
            source, gold = sources[i], rows["groundtruth"][i]
            answered = bool(gold) and checker_for(source) != "none"
            record = {"index": index, "query": rows["prompt"][i], "completion": texts[i], "source": source,
                      "cut_off": cut[i],
                      "correct": is_correct(source, texts[i], gold, cut[i] and strict) if answered else None,
                      "repetition_rate": rewards.repetition_rate([t for t in ids[i] if t != tokenizer.pad_token_id])}
            if answered and samples:
                record.update(majority_fields(source, samples[i * k : (i + 1) * k], gold,
                                              samples_cut[i * k : (i + 1) * k], not strict))
            records.append(record)
        return records

    def summarize_records(self, records: list[dict]) -> dict[str, float]:
        n = max(len(records), 1)
        summary = {"num_questions": float(len(records)),
                   "repetition_rate": sum(r["repetition_rate"] for r in records) / n,
                   "cut_off_rate": sum(r["cut_off"] for r in records) / n}
        answered = [r for r in records if r["correct"] is not None]
        if answered:
            summary["accuracy"] = sum(r["correct"] for r in answered) / len(answered)
        if answered and "samples" in answered[0]:
            summary[f"maj@{len(answered[0]['samples'])}"] = sum(r["majority_correct"] for r in answered) / len(answered)
        return summary

    def evaluation_extras(self, model, dataset) -> dict[str, float]:
        """The validation loss (mean per-token loss of the continuations) and the test prompts' completions."""
        entry = self.args.validation_dataset
        if entry and not hasattr(self, "_validation_rows"):
            self._validation_rows = load_entry_rows(normalize_entry(entry, 0), "eval", self.processing_class, self.args)
        rows = self._validation_rows if entry else dataset
        limit = len(rows) if self.args.max_eval_samples is None else min(self.args.max_eval_samples, len(rows))
        indices, num_real = shard_indices(limit, self.accelerator.process_index, self.accelerator.num_processes)
        part = rows.select(indices)
        with eval_mode(model):
            losses = row_losses(model, self.processing_class, part["prompt"], part["continuation"],
                                self.args.max_prompt_length, self.args.per_device_eval_batch_size)[:num_real]
        total = self.sum_over_processes(torch.tensor([float(losses.double().sum()), float(num_real)], dtype=torch.float64))
        self._write_test_generations(model)
        return {"loss": float(total[0] / total[1].clamp(min=1))}

    def _complete(self, model, prompts: list[str], sample: bool) -> list[list[int]]:
        """Completions (token ids, padded): greedy, or sampled at the run's eval sampling settings."""
        config = eval_generation_config(self.args, self.processing_class, sample,
                                        end_of_text_ids(self.processing_class, model))
        x = [encode_prompt(self.processing_class, p, self.args.max_prompt_length) for p in prompts]
        return generate(model, x, config, self.args.per_device_eval_batch_size).tolist()

    def _write_test_generations(self, model) -> None:
        if not self.args.test_prompts:
            return
        texts = self.processing_class.batch_decode(self._complete(model, self.args.test_prompts,
                                                                  self.args.eval_temperature > 0),
                                                   skip_special_tokens=True)
        if self.accelerator.is_main_process:
            os.makedirs(self.args.output_dir, exist_ok=True)
            with open(os.path.join(self.args.output_dir, TEST_GENERATIONS_FILE), "a") as f:
                for prompt, text in zip(self.args.test_prompts, texts):
                    f.write(json.dumps({"step": self.state.global_step, "prompt": prompt, "completion": text}) + "\n")


def _pad(values: torch.Tensor, width: int) -> torch.Tensor:
    """(b, w) -> (b, width) float32 on CPU, zero-filled on the right."""
    out = values.new_zeros(values.shape[0], width, dtype=torch.float32)
    out[:, : values.shape[1]] = values.float()
    return out.cpu()


def _part(state: dict | None, prefix: str) -> dict | None:
    return None if state is None else {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
