"""One process of `test_distributed.py`'s launches (`accelerate launch ... tests/distributed_worker.py PLAN OUT`).

PLAN is a JSON list of scenarios {"name", "argv", "resume_step", "in_memory" (optional: a model dir)}. For each, every
process builds the trainer from the command-line flags (the `scripts/training.py` path), then:

  full run    evaluate, train (evaluating and checkpointing during it), save_model, evaluate,
              refresh_reference();
  resumed     a new trainer in another output_dir, `resume_from_checkpoint=<full>/checkpoint-N`;

and writes, per process, what the test compares: `OUT/<name>/{full,resumed}_rank<r>.safetensors`
(the trained module's parameters, gathered under ZeRO-3) and `full_rank<r>.json` (eval phases, STaR's
iteration statistics, whether the refreshed reference equals the policy). After the last scenario the
process group is destroyed (`end_distributed`), as `scripts/training.py` does.
"""

from __future__ import annotations

import gc
import json
import os
import sys

import torch
from safetensors.torch import save_file

from implicit_reasoning.pipeline import build_trainer, end_distributed, parse_training_args
from implicit_reasoning.runtime.sharding import gathered


def trained_parameters(trainer) -> dict[str, torch.Tensor]:
    """Full values of the trained module's parameters (policy, and PPO's value network), on every process."""
    module = trainer.accelerator.unwrap_model(trainer.model)
    out = {}
    for name, param in module.named_parameters():
        with gathered([param]):
            out[name] = param.detach().to("cpu", torch.float32, copy=True).contiguous()
    return out


def refreshed_reference_equals_policy(trainer) -> bool | None:
    """`refresh_reference()`, then whether the reference holds the policy's weights (None: no separate reference)."""
    if trainer.ref_model is None:
        return None
    trainer.refresh_reference()
    policy = dict(trainer.unwrapped_policy().named_parameters())
    same = True
    for name, param in trainer.accelerator.unwrap_model(trainer.ref_model).named_parameters():
        with gathered([param, policy[name]]):
            same = same and torch.equal(param.detach().float(), policy[name].detach().float())
    return same


def in_memory_model(path: str):
    """The model at `path` rebuilt in memory (no name_or_path): a fresh load of the reference is impossible."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from implicit_reasoning.runtime.sharding import copy_weights

    source = AutoModelForCausalLM.from_pretrained(path)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))  # ZeRO-3: partitioned at construction
    copy_weights(source, model)
    model.config._name_or_path = ""
    return model


def build(scenario: dict, output_dir: str, *extra: str):
    """The trainer of `scenario` writing to `output_dir`, from its flags (and a model built in memory if asked)."""
    trainer_name, config = parse_training_args([*scenario["argv"], "--output_dir", output_dir, *extra])
    model = in_memory_model(scenario["in_memory"]) if scenario.get("in_memory") else None
    return build_trainer(trainer_name, config, model)


def run(scenario: dict, out: str, rank: int) -> None:
    folder = os.path.join(out, scenario["name"])
    full = os.path.join(folder, "full")
    trainer = build(scenario, full)
    before = trainer.evaluate()
    trainer.train()
    trainer.save_model(full)
    after = trainer.evaluate()
    refreshed = refreshed_reference_equals_policy(trainer)
    during = sorted({h["step"] for h in trainer.state.log_history if any(k.startswith("eval_") for k in h)})
    save_file(trained_parameters(trainer), os.path.join(folder, f"full_rank{rank}.safetensors"))
    with open(os.path.join(folder, f"full_rank{rank}.json"), "w") as f:
        json.dump({"before": sorted(before), "after": sorted(after), "eval_steps": during,
                   "global_step": trainer.state.global_step, "refreshed_reference": refreshed,
                   "iterations": [{k: h.get(k) for k in ("iteration", "kept_samples", "pairs")}
                                  for h in trainer.state.log_history if "iteration" in h]}, f)
    del trainer
    gc.collect()
    trainer = build(scenario, os.path.join(folder, "resumed"), "--eval_strategy", "no")
    trainer.train(resume_from_checkpoint=os.path.join(full, f"checkpoint-{scenario['resume_step']}"))
    save_file(trained_parameters(trainer), os.path.join(folder, f"resumed_rank{rank}.safetensors"))
    del trainer
    gc.collect()


def main(plan_path: str, out: str) -> None:
    rank = int(os.environ.get("RANK", "0"))
    with open(plan_path) as f:
        plan = json.load(f)
    for scenario in plan:
        run(scenario, out, rank)
    end_distributed()


if __name__ == "__main__":
    main(*sys.argv[1:3])
