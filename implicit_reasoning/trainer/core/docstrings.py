"""What `help()` shows for every public trainer and config class: its arguments and a runnable example.

`documented` (a class decorator) appends to a class's own docstring:

* a trainer: its constructor's arguments (`TRAINER_ARGS`, with the dataset columns the class
  reads and its config class), then its example;
* a config: every field the class declares (type, default, and the help text `--help` shows),
  then its example.

The examples (`EXAMPLES`) run offline in seconds on the package's tiny demo model and tokenizer
(`implicit_reasoning.demo`) and generated arithmetic. For a real run load any causal LM
(`AutoModelForCausalLM.from_pretrained("Qwen/Qwen2.5-0.5B-Instruct")`, or pass its hub id as
`model`) and set `dataset_name` (`gsm8k`, a local file, ...). `tests/test_docstrings.py` runs each.
"""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import MISSING, fields

DEMO = "from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer\n"

TRAINER_ARGS = """
Args:
    model (`str` or `PreTrainedModel`): the policy: a hub id or local directory (loaded with the config's
        `torch_dtype`, `attn_implementation`, `trust_remote_code`), or a loaded causal LM.
    args (`{config}`): the settings: the fields of `{config}` (`help({config})`, or
        `implicit-reasoning-train --help --trainer NAME`) and every `transformers.TrainingArguments` field.
    train_dataset (`datasets.Dataset`, *optional*): {columns}; `{name}.load_split(args, "train",
        tokenizer)` builds them from `args.dataset_name`.
    eval_dataset (`datasets.Dataset`, *optional*): the same columns; `evaluate()` reports the greedy accuracy
        (and maj@k with `eval_num_samples` > 1).
    processing_class (`PreTrainedTokenizerBase`, *optional*): the tokenizer (default: `tokenizer_name_or_path`,
        else the model's); the trainer works on a prepared copy, the object passed is never modified.
    ref_model (`str` or `PreTrainedModel`, *optional*): {reference}
    peft_config (`peft.PeftConfig`, *optional*): train an adapter with it (or `use_lora=True` and the `lora_*`
        fields); the reference is then the adapter-disabled base.
    callbacks (`list[TrainerCallback]`, *optional*): as for `transformers.Trainer`.
"""

EXAMPLES = {
    "LatroTrainer": DEMO + """from implicit_reasoning.trainer import LatroConfig, LatroTrainer

tokenizer = build_demo_tokenizer()  # offline; or AutoTokenizer.from_pretrained("Qwen/Qwen2.5-0.5B-Instruct")
model = build_demo_model(tokenizer)  # or AutoModelForCausalLM.from_pretrained(...), or the hub id itself
args = LatroConfig(output_dir="latro_example", dataset_name="arithmetic",
                   dataset_config="num_terms=2,max_value=9,num_examples=32",
                   rloo_k=4, per_device_train_batch_size=8, response_length=16, max_steps=2, max_eval_samples=8,
                   report_to="none")
trainer = LatroTrainer(model, args, train_dataset=LatroTrainer.load_split(args, "train", tokenizer),
                       eval_dataset=LatroTrainer.load_split(args, "eval", tokenizer), processing_class=tokenizer)
trainer.train()
print(trainer.evaluate())  # {'eval_accuracy': ..., 'eval_num_questions': 8.0, ...}
""",
    "MarkovianTrainer": DEMO + """from implicit_reasoning.trainer import MarkovianConfig, MarkovianTrainer

tokenizer = build_demo_tokenizer()
args = MarkovianConfig(output_dir="markovian_example", dataset_name="arithmetic",
                       dataset_config="num_terms=2,max_value=9,num_examples=32",
                       cot_length=12, rloo_k=4, per_device_train_batch_size=8, max_steps=2, max_eval_samples=8,
                       report_to="none")
trainer = MarkovianTrainer(build_demo_model(tokenizer), args, processing_class=tokenizer,
                           train_dataset=MarkovianTrainer.load_split(args, "train", tokenizer),
                           eval_dataset=MarkovianTrainer.load_split(args, "eval", tokenizer))
trainer.train()
print(trainer.evaluate())  # the critic answers from each CoT alone: eval_accuracy, eval_answer_logprob
""",
    "MarkovianVQTrainer": DEMO + """from implicit_reasoning.trainer import MarkovianConfig, MarkovianVQTrainer, trainer_class

tokenizer = build_demo_tokenizer()
args = MarkovianConfig(output_dir="markovian_vq_example", use_vq=True, rloo_k=1, vq_reason_length=4,
                       dataset_name="arithmetic", dataset_config="num_terms=2,max_value=9,num_examples=32",
                       per_device_train_batch_size=4, max_steps=2, report_to="none")
assert trainer_class("markovian", args) is MarkovianVQTrainer  # what `--trainer markovian --use_vq true` runs
trainer = MarkovianVQTrainer(build_demo_model(tokenizer), args, processing_class=tokenizer,
                             train_dataset=MarkovianVQTrainer.load_split(args, "train", tokenizer))
trainer.train()
""",
    "SFTBaselineTrainer": DEMO + """from implicit_reasoning.trainer import SFTBaselineConfig, SFTBaselineTrainer

tokenizer = build_demo_tokenizer()
args = SFTBaselineConfig(output_dir="sft_example", dataset_name="arithmetic",
                         dataset_config="num_terms=2,max_value=9,num_examples=32",
                         response_length=24, per_device_train_batch_size=8, learning_rate=1e-3, max_steps=4,
                         max_eval_samples=8, report_to="none")
trainer = SFTBaselineTrainer(build_demo_model(tokenizer), args, processing_class=tokenizer,
                             train_dataset=SFTBaselineTrainer.load_split(args, "train", tokenizer),
                             eval_dataset=SFTBaselineTrainer.load_split(args, "eval", tokenizer))
trainer.train()
print(trainer.evaluate())  # greedy accuracy of "<rationale> The answer is N." completions
""",
    "STaRTrainer": DEMO + """from implicit_reasoning.trainer import STaRConfig, STaRTrainer

tokenizer = build_demo_tokenizer()
args = STaRConfig(output_dir="star_example", dataset_name="arithmetic", train_strategy="sft",
                  dataset_config="num_terms=2,max_value=9,num_examples=16", num_iterations=2, start_steps=1,
                  samples_per_train_question=2, response_length=16, per_device_train_batch_size=4,
                  max_eval_samples=8, report_to="none")
trainer = STaRTrainer(build_demo_model(tokenizer), args, processing_class=tokenizer,
                      train_dataset=STaRTrainer.load_split(args, "train", tokenizer),
                      eval_dataset=STaRTrainer.load_split(args, "eval", tokenizer))
trainer.train()  # each iteration: generate, keep the correct rationales (and rationalize), fine-tune, validate
print(args.schedule, [h["eval_accuracy"] for h in trainer.state.log_history if "eval_accuracy" in h])
""",
    "PPOCurriculumTrainer": DEMO + """from implicit_reasoning.trainer import PPOCurriculumConfig, PPOCurriculumTrainer

tokenizer = build_demo_tokenizer()
args = PPOCurriculumConfig(output_dir="ppo_example", dataset_name="arithmetic",
                           dataset_config="num_terms=2,max_value=9,num_examples=32",
                           reward_funcs=["answer_accuracy"], response_length=16, per_device_train_batch_size=8,
                           ppo_epochs=2, max_steps=2, max_eval_samples=8, report_to="none")
trainer = PPOCurriculumTrainer(build_demo_model(tokenizer), args, processing_class=tokenizer,
                               train_dataset=PPOCurriculumTrainer.load_split(args, "train", tokenizer),
                               eval_dataset=PPOCurriculumTrainer.load_split(args, "eval", tokenizer))
trainer.train()  # one rollout of 8 prompts, two PPO epochs over it: 2 updates
print(trainer.evaluate())  # validation loss of the gold continuations, greedy accuracy
""",
    "BaseTrainer": DEMO + """from implicit_reasoning.trainer import BaseTrainer, TrainerConfig
from implicit_reasoning.runtime.models import encode_continuation, encode_prompt
from implicit_reasoning.scoring.logprobs import segment_reduce
from implicit_reasoning.scoring.packing import pack_rows
from implicit_reasoning.scoring.window import window_logprobs


class ResponseNLLTrainer(BaseTrainer):
    \"\"\"A method of one's own: the mean negative log-likelihood of the gold response after the prompt.\"\"\"

    trainer_name = "response_nll"
    required_columns = ("queries", "responses")

    def compute_objective(self, model, batch):  # batch: column lists of the raw rows
        tok = self.processing_class
        x = [encode_prompt(tok, q, self.args.max_prompt_length) for q in batch["queries"]]
        y = [encode_continuation(tok, r, append_eos=True) for r in batch["responses"]]
        rows = {k: v.to(self.accelerator.device) for k, v in pack_rows([x, y], tok.pad_token_id).items()}
        logps, window = window_logprobs(model, rows, rows["segment_ids"] == 2)  # the LM head on y's tokens only
        self.log_metric("response_tokens", (rows["segment_ids"] == 2).sum(dim=1).float())  # averaged per log
        return {"loss": -segment_reduce(logps, window["segment_ids"], 2, reduce="mean").mean()}


tokenizer = build_demo_tokenizer()
args = TrainerConfig(output_dir="nll_example", dataset_name="arithmetic",
                     dataset_config="num_terms=2,max_value=9,num_examples=32",
                     per_device_train_batch_size=8, learning_rate=1e-3, max_steps=2, logging_steps=1,
                     report_to="none")
trainer = ResponseNLLTrainer(build_demo_model(tokenizer), args, processing_class=tokenizer,
                             train_dataset=ResponseNLLTrainer.load_split(args, "train", tokenizer))
trainer.train()
""",
    "RolloutTrainer": "import torch\n\n" + DEMO + """from implicit_reasoning.trainer import RolloutConfig, RolloutTrainer
from implicit_reasoning.runtime.models import encode_prompt
from implicit_reasoning.scoring.logprobs import segment_reduce
from implicit_reasoning.scoring.packing import pack_rows
from implicit_reasoning.scoring.window import window_logprobs


class GoldAnswerREINFORCE(RolloutTrainer):
    \"\"\"A sampling method of one's own: reward 1 when a completion states the gold answer, baseline the mean.\"\"\"

    trainer_name = "gold_reinforce"
    required_columns = ("queries", "groundtruth")

    def make_rollout(self, prompts):  # once per update, this process's prompts as column lists
        tok = self.processing_class
        x = [encode_prompt(tok, q, self.args.max_prompt_length) for q in prompts["queries"]]
        tokens = self.sample(x, k=1, max_new_tokens=12, stop_ids=[tok.eos_token_id])
        z = [[t for t in row if t != tok.pad_token_id] or [tok.eos_token_id] for row in tokens.tolist()]
        texts = tok.batch_decode(z, skip_special_tokens=True)
        reward = torch.tensor([float(gold in text) for gold, text in zip(prompts["groundtruth"], texts)])
        self.log_metric("reward", reward)
        rows = {**pack_rows([x, z], tok.pad_token_id), "advantages": reward - reward.mean()}
        return {k: v.to(self.accelerator.device) for k, v in rows.items()}  # rows = samples, cut into micro-batches

    def compute_objective(self, model, batch):  # one micro-batch of the rollout
        logps, window = window_logprobs(model, batch, batch["segment_ids"] == 2)
        return {"loss": -(batch["advantages"] * segment_reduce(logps, window["segment_ids"], 2)).mean()}


tokenizer = build_demo_tokenizer()
args = RolloutConfig(output_dir="reinforce_example", dataset_name="arithmetic",
                     dataset_config="num_terms=2,max_value=9,num_examples=32",
                     per_device_train_batch_size=8, max_steps=2, logging_steps=1, report_to="none")
trainer = GoldAnswerREINFORCE(build_demo_model(tokenizer), args, processing_class=tokenizer,
                              train_dataset=GoldAnswerREINFORCE.load_split(args, "train", tokenizer))
trainer.train()
""",
    "TrainerConfig": """from implicit_reasoning.trainer import TrainerConfig

args = TrainerConfig(output_dir="out", model_name_or_path="Qwen/Qwen2.5-0.5B-Instruct", dataset_name="gsm8k",
                     num_evaluations=4, eval_num_samples=8, use_lora=True, learning_rate=1e-5)
print(args.eval_strategy, args.eval_steps)  # num_evaluations=4: an evaluation every quarter of training
""",
    "RolloutConfig": """from implicit_reasoning.trainer import RolloutConfig

args = RolloutConfig(output_dir="out", per_device_train_batch_size=8, gradient_accumulation_steps=4, top_p=0.95)
print(args.samples_per_update, args.prompts_per_update)  # 32 32: one sample per prompt
""",
    "GroupRolloutConfig": """from implicit_reasoning.trainer.core.rollout_config import GroupRolloutConfig

args = GroupRolloutConfig(output_dir="out", rloo_k=8, per_device_train_batch_size=16, gradient_accumulation_steps=2)
print(args.samples_per_update, args.prompts_per_update)  # 32 4: 4 prompts, 8 samples each
""",
    "LatroConfig": """from implicit_reasoning.trainer import LatroConfig

args = LatroConfig(output_dir="out", rloo_k=4, per_device_train_batch_size=8, gradient_accumulation_steps=2,
                   response_length=24, kl_coef=0.05, stop_seqs=["The answer is"])
print(args.prompts_per_update, args.eval_budget)  # 4 56: 16 samples of 4 per prompt; 24 + 32 new tokens at eval
# the same from the command line: implicit-reasoning-train --trainer latro --rloo_k 4 --response_length 24 ...
""",
    "MarkovianConfig": """from implicit_reasoning.trainer import MarkovianConfig

args = MarkovianConfig(output_dir="out", cot_length=50, method="pg", rloo_k=4, markovian=True,
                       per_device_train_batch_size=8)
print(args.markovian, args.cot_length)  # the critic sees the CoT, not the question
""",
    "SFTBaselineConfig": """from implicit_reasoning.trainer import SFTBaselineConfig

args = SFTBaselineConfig(output_dir="out", dataset_name="gsm8k", response_length=256, learning_rate=1e-5)
print(args.eval_budget)  # 288 new tokens at evaluation: response_length + 32
""",
    "STaRConfig": """from implicit_reasoning.trainer import STaRConfig

args = STaRConfig(output_dir="out", num_iterations=3, start_steps=40, step_growth=1.2, train_strategy="dpo",
                  samples_per_train_question=4)
print(args.schedule, args.max_steps)  # [40, 48, 57] 145: optimizer steps per iteration, derived
""",
    "PPOCurriculumConfig": """from implicit_reasoning.trainer import PPOCurriculumConfig

args = PPOCurriculumConfig(output_dir="out", reward_funcs=["answer_accuracy", "repetition_penalty"],
                           reward_weights=[1.0, 0.5], ppo_epochs=4, num_mini_batches=2, adaptive_kl=True,
                           datasets=["arithmetic:num_terms=3", "gsm8k"], curriculum_rule="exp3")
print(args.prompts_per_rollout, [entry["name"] for entry in args.mixture])  # 16 = 8 per minibatch x 2; the mixture
""",
    "ReasoningPromptFields": """from implicit_reasoning.trainer import SFTBaselineConfig  # LaTRO, STaR, SFT and PPO configs have these

args = SFTBaselineConfig(output_dir="out", cot_trigger="Think it through.", response_length=64)
print(args.dataset_kwargs["cot_trigger"])  # every prompt is "Question: ...\\nThink it through."
""",
    "SamplingFields": """from implicit_reasoning.trainer import STaRConfig  # the configs of trainers that sample have these

args = STaRConfig(output_dir="out", temperature=0.7, top_p=0.9, top_k=50)
print(args.eval_sampling())  # maj@k samples at eval_temperature, else at the training temperature
""",
    "CurriculumFields": """from implicit_reasoning.trainer import LatroConfig  # LaTRO and PPO configs have these

args = LatroConfig(output_dir="out", datasets=[{"name": "arithmetic", "config": "num_terms=2", "weight": 2.0},
                                               "arithmetic_negative"], curriculum_rule="exp3", rloo_k=4,
                   per_device_train_batch_size=8)
print([entry["name"] for entry in args.mixture])  # the mixture the curriculum samples from
""",
}


def _default(f) -> str:
    if f.default is not MISSING:
        return repr(f.default)
    if f.default_factory is not MISSING:
        return repr(f.default_factory())
    return "required"


def _type_name(annotation) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def field_lines(cls) -> list[str]:
    """`name (type, default): help` for every field `cls` itself declares (overrides of a base's default too)."""
    own = cls.__dict__.get("__annotations__", {})
    lines = []
    for f in fields(cls):
        if f.name in own:
            text = f.metadata.get("help", "").strip()
            lines.append(f"{f.name} (`{_type_name(f.type)}`, default {_default(f)}): {text}")
    return lines


def documented(cls):
    """Append the class's arguments (trainer) or declared fields (config) and its runnable example to `__doc__`."""
    parts = [inspect.cleandoc(cls.__doc__ or "")]
    if hasattr(cls, "compute_objective"):  # a trainer
        columns = ", ".join(f"`{c}`" for c in cls.required_columns)
        reference = ("the frozen reference (default: a copy of the policy, or `ref_model_name_or_path`;\n"
                     "        with LoRA, the adapter-disabled base)." if cls.uses_reference else "not used by this trainer.")
        parts.append(TRAINER_ARGS.format(
            config=cls.config_class.__name__, name=cls.__name__, reference=reference,
            columns=f"rows with the string columns {columns}" if columns else "rows in the columns the method reads",
        ).strip())
    else:
        lines = field_lines(cls)
        if lines:
            wrapped = [textwrap.fill(line, 110, initial_indent="    ", subsequent_indent="        ") for line in lines]
            parts.append("Fields this class declares (each a `--flag` and a YAML key; the bases' are in their "
                         "docstrings):\n" + "\n".join(wrapped))
    parts.append("Example (runs offline, in seconds)::\n\n" + textwrap.indent(EXAMPLES[cls.__name__].strip(), "    "))
    cls.__doc__ = "\n\n".join(parts) + "\n"
    return cls
