"""STaRTrainer: Self-Taught Reasoner (Zelikman et al., arXiv 2203.14465), trained by SFT or DPO (+NLL).

Outer iterations on Trainer's own loop: iteration n owns `schedule[n]` optimizer steps, and
its data are built at its first micro-step. One iteration:

    1. generate     samples_per_train_question rationales per train question with the current
                    model (prompt: question + cot_trigger; the last line gives "Answer: X")
    2. filter       keep the samples whose extracted answer is correct (the dataset's checker) and
                    that ended with an end-of-text token (one cut off at response_length never trains)
    3. rationalize  questions with no kept sample: regenerate with the gold answer as a hint (a line
                    after the cot_trigger); keep the correct ones, stored with the hint-free prompt
    4. train        sft: -sum log pi(z | x) over the update's kept rationales / their token count
                    (one token mean over all micro-batches and processes), from the ORIGINAL
                    weights when reset_model_every_iteration (the paper);
                    dpo: every (correct w, incorrect l) pair of a question,
                    -log sigma(beta [(log pi - log pi_ref)(w) - (log pi - log pi_ref)(l)])
                    + rpo_alpha * NLL(w) / |w|, pi_ref = the model at the start of the iteration
                    (rpo_token_mean: NLL over the update's chosen tokens / their count instead)
    5. validate     greedy accuracy and the degeneration rate (at the end of every iteration,
                    and every val_every_n_steps)

Each iteration's generations are written to output_dir/iteration_<n>/generated.jsonl. The
reference log-probs of DPO are computed once per iteration, when its data are built (the
policy IS the reference then), so no second model is kept. Generation draws from a seed of its
own per iteration, so a resume rebuilds exactly the data an uninterrupted run would.
"""

from __future__ import annotations

import os
import shutil
import warnings

import torch

from ...data.prompts import format_prompt, question_text
from ...evaluation.accuracy import shard_indices
from ...evaluation.checkers import extract_answer, is_correct
from ...generation.sampling import generate, sampling_config
from ...objectives.advantages import find_stop_positions
from ...objectives.dpo import dpo_loss
from ...objectives.star import (
    degeneration_rate,
    dpo_pairs,
    is_degenerate,
    is_finished,
    kept,
    locate_step,
    unsolved,
    update_rows,
    with_hint,
)
from ...runtime.models import encode_continuation, encode_prompt, end_of_text_ids, eval_mode
from ...runtime.sharding import gathered
from ...scoring.logprobs import masked_sum, segment_reduce, token_normalizer
from ...scoring.packing import pack_rows
from ...scoring.window import score_rows, window_logprobs
from ..core.base_trainer import BaseTrainer
from ..core.docstrings import documented
from ..core.guard import SkipAwareScheduler
from ..core.state import atomic_write
from .config import STaRConfig
from .data import (
    CHECKPOINT_DATA_FILE,
    GENERATED_FILE,
    PacingSampler,
    SaveIterationData,
    ValidateAtIterationEnds,
    load_generations,
    write_generations,
)

BASE_WEIGHTS_FILE = "star_base_weights.safetensors"
PROMPT, COMPLETION = 1, 2
ROW_KEYS = ("input_ids", "attention_mask", "position_ids", "segment_ids")


@documented
class STaRTrainer(BaseTrainer):
    """STaR on any causal LM. Datasets need `queries` (the prompt) and `groundtruth` (+ `question` to rationalize)."""

    trainer_name = "star"
    config_class = STaRConfig
    required_columns = ("queries", "groundtruth")
    args: STaRConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.schedule = self.args.schedule
        self.end_ids = end_of_text_ids(self.processing_class, self.model)
        self._records: list[dict] | None = None  # the current iteration's generations (saved in checkpoints)
        self._data: list = []  # its training examples (SFT records or DPO pairs)
        self._tokens: list[int] = []  # the completion (SFT) / chosen (DPO) token count of each example
        self._built: int | None = None  # which iteration `_records` belongs to
        self._micro = (-1, 0)  # (global step, micro-step within it)
        self._base_state: dict[str, torch.Tensor] | None = None  # the weights to reset to (taken at step 0)
        if self.args.rationalize and self.train_dataset is not None:
            self._check_hint_prompts()
        self.add_callback(SaveIterationData(lambda: self._records))
        if self.eval_dataset is not None:
            self.add_callback(ValidateAtIterationEnds(self.schedule))
        else:  # nothing to validate on
            self.args.eval_on_start = False

    @classmethod
    def columns_needed(cls, args: STaRConfig) -> tuple[str, ...]:
        """Rationalization rebuilds the prompt with a hint from the raw `question`."""
        return cls.required_columns + (("question",) if args.rationalize else ())

    def _check_hint_prompts(self) -> None:
        """Rationalization rebuilds prompts from `question` and cot_trigger: the dataset's `queries` must be
        built the same way, or rationalizations would come from another prompt than the one stored."""
        row = self.train_dataset[0]
        rebuilt = format_prompt(self.processing_class, question_text(row["question"], self.args.cot_trigger),
                                use_chat_template=self.args.use_chat_template)
        if rebuilt != row["queries"]:
            raise ValueError(
                "rationalize=True rebuilds each prompt from the `question` column and cot_trigger, but this dataset's "
                f"`queries` were built another way (row 0: {row['queries']!r}, rebuilt: {rebuilt!r}); load it with "
                "STaR's cot_trigger (load_task_dataset(..., cot_trigger=config.cot_trigger)) or set rationalize=False"
            )

    @classmethod
    def sft_rows(cls, config: STaRConfig, rows, tokenizer):
        """Warm-start text in STaR's format: the rationale, then the last line "Answer: X"."""
        return rows.map(lambda row: {"responses": f"\nAnswer: {row['target']}"}, desc="STaR warm-start format")

    # ============================================================== the outer loop
    def _get_train_sampler(self, train_dataset=None):
        """The loader only paces Trainer's loop (batches come from the iteration's data). Its length is a whole
        number of updates, so that every update has gradient_accumulation_steps micro-batches; no RNG use."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        args = self.args
        per_update = args.per_device_train_batch_size * self.accelerator.num_processes * args.gradient_accumulation_steps
        return PacingSampler(len(dataset), per_update)

    def _prepare_inputs(self, inputs) -> dict:
        step = self.state.global_step
        iteration, offset = locate_step(step, self.schedule)
        if iteration != self._built:
            self._build_iteration(iteration, resumed=offset > 0)
        micro = self._micro[1] + 1 if self._micro[0] == step else 0
        self._micro = (step, micro)
        return self._micro_batch(iteration, offset, micro)

    def _build_iteration(self, iteration: int, resumed: bool) -> None:
        if self.args.reset_model_every_iteration and self._base_state is None:
            self._base_state = self._base_weights()
        path = self.iteration_file(iteration)
        if resumed:  # stopped inside this iteration: its data (reference log-probs included) from the checkpoint,
            records = load_generations(self._checkpoint_data(path))  # also into this run's directory (a later resume)
            self._write_generations(path, records)
        else:
            # 1-3. generate, filter, rationalize (or take the preloaded generations)
            if iteration == 0 and self.args.preload_generated:
                records = [{**{k: v for k, v in r.items() if k != "ref_logp"}, "iteration": 0}
                           for r in load_generations(self.args.preload_generated)]
            else:
                records = self.generate_iteration(iteration)
            if self._base_state is not None:  # 4. train from the original weights (generation used the last model)
                self._reset_to_base()
            if self.args.train_strategy == "dpo":  # pi_ref = the model at the start of the iteration: now
                self._add_reference_logps(records)
            self._write_generations(path, records)
        if self.args.reset_model_every_iteration:  # each iteration trains afresh: its own LR schedule too
            self._restart_schedule(iteration, offset=self.state.global_step - sum(self.schedule[:iteration]))
        self._records = records
        self._data = kept(records) if self.args.train_strategy == "sft" else dpo_pairs(records)
        self._tokens = [len(self._completion_ids(r if self.args.train_strategy == "sft" else r[0])) for r in self._data]
        self._built = iteration
        if not resumed:  # a resume inside the iteration: its statistics are in the checkpoint's log history
            self._log_iteration(iteration, records)

    def _checkpoint_data(self, fallback: str) -> str:
        """The iteration's data saved in the checkpoint resumed from (else the run's own file); an error, never a
        silent regeneration with the mid-iteration model."""
        for path in (os.path.join(self.resumed_from or "", CHECKPOINT_DATA_FILE), fallback):
            if self.resumed_from and os.path.exists(path):
                return path
        raise FileNotFoundError(
            f"resuming inside a STaR iteration needs its data: neither {self.resumed_from}/{CHECKPOINT_DATA_FILE} nor "
            f"{fallback} exists (regenerating them with the mid-iteration model would change the run)"
        )

    def _write_generations(self, path: str, records: list[dict]) -> None:
        if self.args.should_save:
            write_generations(path, records)

    def iteration_file(self, iteration: int) -> str:
        return os.path.join(self.args.output_dir, f"iteration_{iteration}", GENERATED_FILE)

    # ====================================================== 1-3. generate, filter, rationalize
    def generate_iteration(self, iteration: int) -> list[dict]:
        """Records of every train question's samples (and rationalizations), the same on every process."""
        args, dataset = self.args, self.train_dataset
        limit = min(args.gen_batch_size, len(dataset)) if args.single_batch else len(dataset)
        indices, num_real = shard_indices(limit, self.accelerator.process_index, self.accelerator.num_processes)
        rows = dataset.select(indices)
        with torch.random.fork_rng(devices=[]):  # a seed per iteration and process: resumes rebuild the same data
            torch.manual_seed(args.seed + 1000 * iteration + self.accelerator.process_index)
            records = self._sample(rows, indices, list(rows["queries"]), hinted=False)[: num_real * self._k]
            if args.rationalize:
                records += self._rationalize(rows, indices, records)
        for record in records:
            record["iteration"] = iteration
        return self._gather(records)

    def _rationalize(self, rows, indices: list[int], records: list[dict]) -> list[dict]:
        """Correct samples for this process's unsolved questions, generated with the gold answer as a hint.

        Every process makes the same number of generate calls (padded with its first row), as ZeRO-3 needs.
        """
        missing = set(unsolved(records))
        todo = [i for i, index in enumerate(indices) if index in missing and i < len(records) // self._k]
        count = torch.tensor([len(todo)], device=self.accelerator.device)
        most = int(self.accelerator.gather(count).max()) if self.accelerator.num_processes > 1 else len(todo)
        if most == 0:
            return []
        padded = todo + [todo[0] if todo else 0] * (most - len(todo))
        prompts = [self._hint_prompt(rows[i]) for i in padded]
        extra = self._sample(rows.select(padded), [indices[i] for i in padded], prompts, hinted=True)
        return kept(extra[: len(todo) * self._k])

    @property
    def _k(self) -> int:
        return self.args.samples_per_train_question

    def _sample(self, rows, indices: list[int], prompts: list[str], hinted: bool) -> list[dict]:
        args, tokenizer = self.args, self.processing_class
        ids = [encode_prompt(tokenizer, p, args.max_prompt_length) for p in prompts]
        config = sampling_config(args.response_length, tokenizer.pad_token_id, self.end_ids, args.temperature,
                                 args.top_p, args.top_k)
        repeated = [x for x in ids for _ in range(self._k)]
        show = self.accelerator.is_main_process and not args.disable_tqdm  # a long generation, not a silent pause
        label = f"STaR {'rationalizations (hinted)' if hinted else 'rationales'}" if show else None
        with self.generation_model() as model:
            generated = generate(model, repeated, config, args.gen_batch_size, backend=self.generation_engine(),
                                 progress=label)
        stops = find_stop_positions(generated, self.end_ids, ()).tolist()  # -1: cut off at response_length
        ids = [row[:stop] if stop >= 0 else row for row, stop in zip(generated.tolist(), stops)]
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        checker = self.eval_checker_name()
        out = []
        for i, (text, stop) in enumerate(zip(texts, stops)):
            row = rows[i // self._k]
            out.append({
                "question_index": int(indices[i // self._k]), "question": row.get("question"), "prompt": row["queries"],
                # a sample cut off at response_length: read only from an answer statement, as evaluation does
                "rationale": text, "prediction": extract_answer(checker, text, stop < 0),
                "correct": is_correct(checker, text, row["groundtruth"], stop < 0), "hinted": hinted,
                "groundtruth": row["groundtruth"], "finished": stop >= 0,
                "end_token_id": int(generated[i, stop]) if stop >= 0 else None,
            })
        return out

    def _hint_prompt(self, row) -> str:
        """The rationalization prompt: the question, the cot_trigger and the gold answer as a hint."""
        user = with_hint(question_text(row["question"], self.args.cot_trigger), row["groundtruth"])
        return format_prompt(self.processing_class, user, use_chat_template=self.args.use_chat_template)

    def _gather(self, records: list[dict]) -> list[dict]:
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            records = gather_object(records)
        return sorted(records, key=lambda r: (r["question_index"], r["hinted"]))

    # ============================================================== 4. training data
    def _add_reference_logps(self, records: list[dict]) -> None:
        """log pi_ref(completion | prompt) of every record that takes part in a DPO pair."""
        compared = {id(r): r for pair in dpo_pairs(records) for r in pair}
        todo = list(compared.values())
        for record, logp in zip(todo, self._completion_logps(todo)):
            record["ref_logp"] = logp

    def _completion_logps(self, records: list[dict]) -> list[float]:
        """Summed float32 log pi(completion | prompt) of each record, sharded over processes."""
        if not records:  # the same on every process
            return []
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        indices, num_real = shard_indices(len(records), rank, world)
        rows = self._pack([records[i] for i in indices])
        with eval_mode(self.model):
            sums = score_rows(self.model, rows, (COMPLETION,), self.args.gen_batch_size)[COMPLETION].tolist()
        mine = list(zip(indices, sums))[:num_real]
        if world > 1:
            from accelerate.utils import gather_object

            mine = gather_object(mine)
        return [value for _, value in sorted(mine)]

    def _completion_ids(self, record: dict) -> list[int]:
        """The rationale's tokens and the end-of-text token the model ended it with (files of older versions: eos)."""
        end = record.get("end_token_id", self.processing_class.eos_token_id)
        return encode_continuation(self.processing_class, record["rationale"]) + [end]

    def _pack(self, records: list[dict]) -> dict:
        tokenizer = self.processing_class
        prompts = [encode_prompt(tokenizer, r["prompt"], self.args.max_prompt_length) for r in records]
        completions = [self._completion_ids(r) for r in records]
        return pack_rows([prompts, completions], tokenizer.pad_token_id, align=COMPLETION - 1)

    def _micro_batch(self, iteration: int, offset: int, micro: int) -> dict:
        """This process's rows of micro-step `micro` of update `offset`, from a per-iteration permutation, and the
        token normaliser of the whole update (every process computes it from the same data: no communication)."""
        args, world, rank = self.args, self.accelerator.num_processes, self.accelerator.process_index
        size, accumulation = args.per_device_train_batch_size, args.gradient_accumulation_steps
        if not self._data:  # nothing to train on (no correct sample / no pair): skip the update, uncounted
            return self.nothing_to_train()
        order = torch.randperm(len(self._data), generator=torch.Generator().manual_seed(args.seed + iteration)).tolist()
        update = update_rows(order, offset, size * world * accumulation)
        start = (micro * world + rank) * size
        chosen = [self._data[i] for i in update[start : start + size]]
        normalizer = token_normalizer([self._tokens[i] for i in update], world, accumulation)
        device = self.accelerator.device
        if args.train_strategy == "sft":
            rows = self._pack(chosen)
        else:
            rows = self._pack([w for w, _ in chosen] + [l for _, l in chosen])  # chosen first, then rejected
            ref = [w["ref_logp"] for w, _ in chosen] + [l["ref_logp"] for _, l in chosen]
            rows["ref_logps"] = torch.tensor(ref)
        rows["token_normalizer"] = torch.tensor(normalizer)
        return {k: v.to(device) for k, v in rows.items()}

    def compute_objective(self, model, batch: dict) -> dict[str, torch.Tensor]:
        logps, window = window_logprobs(model, batch, batch["segment_ids"] == COMPLETION)
        completion = window["segment_ids"] == COMPLETION
        if self.args.train_strategy == "sft":  # 4. sft: -sum of log pi over the update's kept tokens / their count
            return {"loss": -masked_sum(logps, completion) / batch["token_normalizer"]}
        # 4. dpo: one forward over [chosen; rejected], summed float32 log-probs of each completion
        sums = segment_reduce(logps, window["segment_ids"], COMPLETION)
        half = len(sums) // 2
        if self.args.rpo_token_mean:  # TRL's convention: one token mean over the update's chosen tokens
            chosen_nll = -masked_sum(logps[:half], completion[:half]) / batch["token_normalizer"]
        else:  # the RPO paper's: each chosen rationale's own token mean, averaged over pairs
            chosen_nll = -segment_reduce(logps[:half], window["segment_ids"][:half], COMPLETION, "mean")
        ref = batch["ref_logps"]
        return dpo_loss(sums[:half], sums[half:], ref[:half], ref[half:], self.args.dpo_beta, chosen_nll,
                        self.args.rpo_alpha)

    # ============================================================ reset to the base
    def _trainable(self):
        return [(n, p) for n, p in self.accelerator.unwrap_model(self.model).named_parameters() if p.requires_grad]

    def _base_weights(self) -> dict[str, torch.Tensor]:
        """The trainable weights at step 0: taken now on a fresh start (and saved beside the run), read back on a
        resume (the model then holds a checkpoint's weights, not the base)."""
        from safetensors.torch import load_file, save_file

        path = os.path.join(self.args.output_dir, BASE_WEIGHTS_FILE)
        if self.state.global_step > 0:
            original = os.path.join(os.path.dirname(os.path.abspath(self.resumed_from or "")), BASE_WEIGHTS_FILE)
            found = next((p for p in (path, original) if os.path.exists(p)), None)
            if found is None:
                raise FileNotFoundError(f"resuming with reset_model_every_iteration=True needs {path} or {original} "
                                        "(the weights to reset to, written when the run started)")
            if found != path and self.args.should_save:  # beside this run too: its checkpoints resume anywhere
                os.makedirs(self.args.output_dir, exist_ok=True)
                atomic_write(path, lambda tmp: shutil.copyfile(found, tmp))
            return load_file(found)
        state = {}
        for name, param in self._trainable():  # ZeRO-3: one full parameter at a time
            with gathered([param]):
                state[name] = param.detach().to("cpu", copy=True).contiguous()
        if self.args.should_save:
            os.makedirs(self.args.output_dir, exist_ok=True)
            save_file(state, path)
        return state

    @torch.no_grad()
    def _reset_to_base(self) -> None:
        """The trainable weights back to their values at init, bit for bit, and a fresh optimizer state.

        Under DeepSpeed the weights are written one gathered parameter at a time, the engine's fp32 master
        copies are refreshed from them (`refresh_fp32_params`) and the wrapped optimizer's state is emptied.
        """
        for name, param in self._trainable():
            with gathered([param], modifier_rank=0):
                param.copy_(self._base_state[name])
        self.generation_weights_changed()
        zero = getattr(self.deepspeed, "optimizer", None) if self.is_deepspeed_enabled else None
        if zero is not None and hasattr(zero, "refresh_fp32_params"):
            zero.refresh_fp32_params()
        optimizer = self.optimizer
        while hasattr(optimizer, "optimizer"):  # accelerate's wrapper, DeepSpeed's ZeRO optimizer, the torch one
            optimizer = optimizer.optimizer
        if optimizer is not None:
            optimizer.state.clear()

    def _restart_schedule(self, iteration: int, offset: int) -> None:
        """A fresh LR schedule (warm-up included) over this iteration's steps, `offset` steps in (a resume)."""
        from transformers import get_scheduler

        args, steps = self.args, self.schedule[iteration]
        optimizer = self.optimizer
        for group in optimizer.param_groups:  # the schedule's base value is the configured learning rate
            group["initial_lr"] = group["lr"] = args.learning_rate
        scheduler = get_scheduler(args.lr_scheduler_type, optimizer=optimizer,
                                  num_warmup_steps=args.get_warmup_steps(steps), num_training_steps=steps,
                                  scheduler_specific_kwargs=args.lr_scheduler_kwargs)
        with warnings.catch_warnings():  # stepping to the resume point, without optimizer steps
            warnings.simplefilter("ignore")
            for _ in range(offset):
                scheduler.step()
        if isinstance(self.lr_scheduler, SkipAwareScheduler):
            self.lr_scheduler.scheduler = scheduler
        else:
            self.lr_scheduler = scheduler

    # =================================================================== 5. validate
    def evaluation_records(self, model, dataset) -> list[dict]:
        """The core's greedy accuracy (and maj@k), plus whether each completion is degenerate."""
        records = super().evaluation_records(model, dataset)
        for record in records:
            record["degenerate"] = is_degenerate(record["completion"])
        return records

    def _log_iteration(self, iteration: int, records: list[dict]) -> None:
        """The iteration's data statistics, logged at once (not averaged into the next training log)."""
        hint_free = [r for r in records if not r["hinted"]]
        logs = {
            "iteration": float(iteration),
            "kept_samples": float(len(kept(records))),
            "unfinished_samples": float(sum(not is_finished(r) for r in records)),
            "rationalized_samples": float(sum(r["hinted"] for r in records)),
            "generation_accuracy": sum(r["correct"] for r in hint_free) / max(len(hint_free), 1),
            "generation_degeneration_rate": degeneration_rate([r["rationale"] for r in hint_free]),
        }
        if self.args.train_strategy == "dpo":
            logs["pairs"] = float(len(self._data))
        self.log(logs)
        self.record_samples([{k: r[k] for k in ("prompt", "rationale", "prediction", "correct", "hinted")}
                             for r in records])
