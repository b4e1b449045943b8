"""Independent review (revB): one PPO rollout and its two updates recomputed in float64 plain torch, written from the
papers (Schulman et al. 2017; Ziegler et al. 2019; GAE, Schulman et al. 2016) without the project's helpers: the
rollout's log-probs, values, KL-shaped rewards, GAE advantages / returns, whitening, the adaptive beta, and for an
update with ratio 1 and one with ratio != 1 the clipped policy / value losses, approx KL, clip fractions, entropy,
ratio, every logged metric and the gradient of every parameter, for gradient accumulation 1 and 2."""

import copy
import math

import pytest
import torch
from test_ppo_trainer import _config, _trainer
from transformers import TrainerCallback

T, GAMMA, LAM, BETA, EPS, EPS_V, VF = 0.8, 0.95, 0.9, 0.2, 0.02, 0.02, 0.3
KL_TARGET, HORIZON = 0.01, 40


def length_reward(prompts, completions, completion_ids, **kwargs):
    """A deterministic reward of the completion's tokens (recomputed below from the rollout's ids)."""
    return [0.25 * len(ids) - 1.0 + 0.5 * (ids[0] % 3) for ids in completion_ids]


class Snapshots(TrainerCallback):
    """Before each optimizer step: the parameters the update's loss was computed with, and their gradients."""

    def __init__(self, trainer):
        self.trainer, self.params, self.grads = trainer, [], []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        module = self.trainer.accelerator.unwrap_model(self.trainer.model)
        self.params.append({n: p.detach().clone() for n, p in module.named_parameters()})
        self.grads.append({n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None})


def forward64(module, params, ids, mask, start):
    """float64 (policy log-probs at T, entropies at T, values) of the response columns start.. (one full forward)."""
    module = copy.deepcopy(module).double()
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(params[name].double())
    module.train(False)
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    logits = module.policy(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits[:, start - 1 : -1] / T
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    hidden = module.value.backbone(input_ids=ids, attention_mask=mask, position_ids=position_ids).last_hidden_state
    values = (hidden @ module.value.head.weight.T + module.value.head.bias).squeeze(-1)[:, start - 1 : -1]
    return module, logp, entropy.detach(), values


def mmean(x, m):
    return (x * m).sum() / m.sum()


@pytest.mark.parametrize("accumulation", [1, 2])
def test_a_ppo_rollout_and_two_updates_against_float64_plain_torch(tmp_path, demo_tokenizer, accumulation):
    torch.manual_seed(0)
    config = _config(tmp_path, max_steps=2, ppo_epochs=2, num_mini_batches=1, gradient_accumulation_steps=accumulation,
                     per_device_train_batch_size=8 // accumulation, optim="sgd", learning_rate=2.0,
                     lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0, temperature=T, gamma=GAMMA,
                     lam=LAM, kl_coef=BETA, adaptive_kl=True, kl_target=KL_TARGET, kl_horizon=HORIZON, cliprange=EPS,
                     cliprange_value=EPS_V, vf_coef=VF, whiten_advantages=True, reward_funcs=[length_reward])
    trainer = _trainer(config, demo_tokenizer)
    trainer.ref_model.model.layers[0].mlp.down_proj.weight.data.mul_(1.5)  # a reference that differs from the policy
    snapshots = Snapshots(trainer)
    trainer.add_callback(snapshots)
    rollouts, original = [], trainer.make_rollout
    trainer.make_rollout = lambda prompts: rollouts.append(original(prompts)) or rollouts[-1]
    trainer.train()
    assert len(rollouts) == 1 and len(snapshots.params) == 2
    out = rollouts[0]
    ids, mask, segments = out["input_ids"], out["attention_mask"], out["segment_ids"]
    start = int((segments == 2).any(0).nonzero()[0])
    m = (segments[:, start:] == 2).double()
    lengths = m.sum(1).long()

    # ---- the rollout, float64, under the initial parameters (the first update's)
    module, old_logp, _, old_values = forward64(trainer.model, snapshots.params[0], ids, mask, start)
    with torch.no_grad():
        ref = copy.deepcopy(trainer.ref_model).double()
        ref_logits = ref(input_ids=ids, attention_mask=mask,
                         position_ids=(mask.cumsum(1) - 1).clamp(min=0)).logits[:, start - 1 : -1] / T
        ref_logp = torch.log_softmax(ref_logits, -1).gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1)
    old_logp, old_values = old_logp.detach() * m, old_values.detach() * m
    scores = torch.tensor(length_reward(None, None, [ids[i, start : start + lengths[i]].tolist() for i in range(8)]),
                          dtype=torch.float64)
    kl = (old_logp - ref_logp) * m
    rewards = -BETA * kl
    advantages, returns = torch.zeros_like(m), torch.zeros_like(m)
    for i in range(8):
        rewards[i, lengths[i] - 1] += scores[i]
        last = 0.0
        for t in reversed(range(int(lengths[i]))):
            next_value = old_values[i, t + 1] if t + 1 < lengths[i] else 0.0
            delta = rewards[i, t] + GAMMA * next_value - old_values[i, t]
            last = delta + GAMMA * LAM * last
            advantages[i, t] = last
    returns = (advantages + old_values) * m
    valid = advantages[m.bool()]
    whitened = (advantages - valid.mean()) / math.sqrt(float(valid.var(unbiased=True)) + 1e-8) * m
    seq_kl = kl.sum(1)
    beta_next = BETA * (1 + min(max(float(seq_kl.mean()) / KL_TARGET - 1, -0.2), 0.2) * 8 / HORIZON)

    def close(actual, expected, what, atol=1e-5):
        torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                                   torch.as_tensor(expected, dtype=torch.float64), atol=atol, rtol=1e-4,
                                   msg=lambda msg: f"{what}: {msg}")

    width = m.shape[1]
    close(out["old_logps"][:, :width] * m, old_logp, "old_logps", atol=1e-4)
    close(out["old_values"][:, :width] * m, old_values, "old_values")
    close(out["advantages"][:, :width], whitened, "whitened advantages", atol=1e-4)
    close(out["returns"][:, :width] * m, returns, "returns", atol=1e-4)
    assert trainer.kl_ctl.value == pytest.approx(beta_next, rel=1e-5)

    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2
    rollout_metrics = {
        "objective/kl": seq_kl.mean(), "objective/kl_coef": BETA, "objective/scores": scores.mean(),
        "objective/non_score_reward": (-BETA * seq_kl).mean(), "objective/rlhf_reward": (scores - BETA * seq_kl).mean(),
        "completion_length": lengths.double().mean(),
        "val/vpred": mmean(old_values, m), "val/returns_mean": mmean(returns, m),
        "val/returns_var": mmean((returns - mmean(returns, m)) ** 2, m),
        "val/explained_variance": 1 - mmean((returns - old_values - mmean(returns - old_values, m)) ** 2, m)
        / mmean((returns - mmean(returns, m)) ** 2, m),
        f"rewards/{length_reward.__name__}/mean": scores.mean(),
    }
    for name, value in rollout_metrics.items():
        close(logs[0][name], value, name, atol=1e-4)

    # ---- the two updates: ratio 1, then ratio != 1 (after the first SGD step); both on the whole rollout
    for update in range(2):
        module, logp, entropy, values = forward64(trainer.model, snapshots.params[update], ids, mask, start)
        log_ratio = (logp - old_logp) * m
        ratio = torch.exp(log_ratio)
        pg1, pg2 = -whitened * ratio, -whitened * ratio.clamp(1 - EPS, 1 + EPS)
        clipped_v = old_values + (values - old_values).clamp(-EPS_V, EPS_V)
        vf1, vf2 = (values - returns) ** 2, (clipped_v - returns) ** 2
        policy_loss, value_loss = mmean(torch.maximum(pg1, pg2), m), mmean(0.5 * torch.maximum(vf1, vf2), m)
        loss = policy_loss + VF * value_loss
        loss.backward()
        expected = {
            "loss": loss, "loss/policy": policy_loss, "loss/value": value_loss,
            "policy/approxkl": mmean(0.5 * log_ratio**2, m), "policy/clipfrac": mmean((pg2 > pg1).double(), m),
            "val/clipfrac": mmean((vf2 > vf1).double(), m), "val/ratio": mmean(ratio, m),
            "policy/entropy": mmean(entropy, m),
        }
        for name, value in expected.items():
            close(logs[update][name], value.detach(), f"update {update}: {name}", atol=2e-5)
        grads = snapshots.grads[update]
        for name, p in module.named_parameters():
            close(grads[name], p.grad, f"update {update}: grad of {name}", atol=2e-6)
        if update == 1:  # the second update really is off-policy and clips
            assert abs(float(expected["val/ratio"].detach()) - 1) > 1e-3 and float(expected["policy/clipfrac"]) > 0


def test_answer_accuracy_reads_a_cut_off_rollout_completion_as_evaluation_does(tmp_path, demo_tokenizer):
    """A completion that ran out of response_length without an end-of-text token is read only from an answer
    statement, in the rollout's answer_accuracy reward as in evaluation (and STaR never trains on one): the
    checker's last-number fallback would reward a policy for running past its budget."""
    config = _config(tmp_path, reward_funcs=["answer_accuracy"], score_from_generation=False, response_length=6,
                     kl_coef=0.0, gamma=1.0, lam=1.0, whiten_advantages=False)
    trainer = _trainer(config, demo_tokenizer)
    prompts = trainer.train_dataset.select(range(3)).to_dict()
    eos, pad = demo_tokenizer.eos_token_id, demo_tokenizer.pad_token_id

    def ids(text):
        return demo_tokenizer(text, add_special_tokens=False).input_ids

    # row 0: cut off (6 tokens, no end-of-text), its last number the gold answer, no answer statement;
    # row 1: the same kind of text, finished; row 2: cut off after an answer statement
    rows = [ids(f"so so so so = {prompts['groundtruth'][0]}")[-6:],
            ids(f"so = {prompts['groundtruth'][1]}") + [eos],
            ids(f"The answer is {prompts['groundtruth'][2]} so so so so")[:6]]
    assert len(rows[0]) == len(rows[2]) == 6 and len(rows[1]) < 6 and eos not in rows[0] + rows[2]
    generated = torch.tensor([r + [pad] * (6 - len(r)) for r in rows])
    trainer.sample = lambda *args, **kwargs: generated
    out = trainer.make_rollout(prompts)
    # kl_coef 0, gamma = lam = 1, no whitening: the first token's return is the completion's score
    assert out["returns"][:, 0].tolist() == pytest.approx([0.0, 1.0, 1.0], abs=1e-5)


def test_a_lora_checkpoint_missing_adapter_weights_is_an_error_not_a_partial_load(tmp_path, demo_tokenizer):
    """PPO's resume / best-model load (`value_model.load_weights`) promises "a checkpoint missing weights is an
    error, never a silent partial load": an adapter file without some of the model's adapters (a resume with more
    target_modules than the checkpoint had) left those at their initial values, silently."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    from implicit_reasoning.demo import build_demo_model
    from implicit_reasoning.trainer.ppo_curriculum.value_model import load_weights

    def lora(modules):
        base = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
        return get_peft_model(base, LoraConfig(r=4, target_modules=modules))

    lora(["q_proj"]).save_pretrained(tmp_path / "ckpt")
    model = lora(["q_proj", "v_proj"])
    with pytest.raises(ValueError, match="v_proj"):
        load_weights(model, str(tmp_path / "ckpt"))
    full = lora(["q_proj", "v_proj"])
    full.save_pretrained(tmp_path / "full")
    load_weights(model, str(tmp_path / "full"))  # a complete file loads, every adapter weight equal
    saved = load_file(tmp_path / "full" / "adapter_model.safetensors")
    assert saved and all(name.endswith(".weight") for name in saved)
    state = dict(model.named_parameters())
    for name, value in saved.items():
        key = name.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default.")
        assert torch.equal(state[key], value), name


@pytest.mark.parametrize("token_mean, accumulation", [(False, 1), (False, 2), (True, 2)])
def test_star_dpo_second_update_logs_and_gradients_against_float64_plain_torch(tmp_path, demo_tokenizer,
                                                                                token_mean, accumulation):
    """The second DPO update of an iteration (pi != pi_ref, so every reward metric is non-trivial): loss, dpo_loss,
    nll_loss and TRL's rewards/* metrics as logged, and every gradient, against float64 plain torch (Rafailov et al.
    2023; + rpo_alpha x the chosen NLL, Pang et al. 2024), for gradient accumulation 1 and 2."""
    from test_star_trainer import make
    from test_star_update import preload_pairs, update_args

    from implicit_reasoning.trainer import STaRConfig
    from implicit_reasoning.data.registry import load_task_dataset

    beta, alpha = 0.5, 0.7
    train = load_task_dataset("arithmetic", "train", demo_tokenizer,
                              dataset_config="num_terms=2,max_value=5,num_examples=8",
                              cot_trigger=STaRConfig.cot_trigger)
    data = (train, None)
    pairs = preload_pairs(tmp_path / "pairs.jsonl", data)
    trainer = make(tmp_path, demo_tokenizer, data, **{**update_args(
        tmp_path, tmp_path / "pairs.jsonl", per_device_train_batch_size=8 // accumulation,
        gradient_accumulation_steps=accumulation, train_strategy="dpo", dpo_beta=beta, rpo_alpha=alpha,
        rpo_token_mean=token_mean), "start_steps": 2, "logging_steps": 1})
    snapshots = Snapshots(trainer)
    trainer.add_callback(snapshots)
    trainer.train()
    assert len(snapshots.params) == 2
    logs = [h for h in trainer.state.log_history if "rewards/chosen" in h]
    assert len(logs) == 2

    from implicit_reasoning.demo import build_demo_model

    def model_at(params):
        model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2).double().eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(params[name].double())
        return model

    def completion_logps(model, record):
        from test_star_update import rationale_logps

        return rationale_logps(model, demo_tokenizer, record)

    reference = model_at(snapshots.params[0])
    with torch.no_grad():
        ref = [(completion_logps(reference, w).sum(), completion_logps(reference, l).sum()) for w, l in pairs]
    model = model_at(snapshots.params[1])
    chosen_r, rejected_r, dpo, nll_sum, nll_count, nll_means = [], [], 0.0, 0.0, 0, 0.0
    for (w, l), (ref_w, ref_l) in zip(pairs, ref):
        lw, ll = completion_logps(model, w), completion_logps(model, l)
        cw, cl = beta * (lw.sum() - ref_w), beta * (ll.sum() - ref_l)
        chosen_r.append(cw.detach())
        rejected_r.append(cl.detach())
        dpo = dpo - torch.nn.functional.logsigmoid(cw - cl)
        nll_sum, nll_count, nll_means = nll_sum - lw.sum(), nll_count + len(lw), nll_means - lw.mean()
    dpo = dpo / len(pairs)
    nll = nll_sum / nll_count if token_mean else nll_means / len(pairs)
    loss = dpo + alpha * nll
    loss.backward()
    chosen_r, rejected_r = torch.stack(chosen_r), torch.stack(rejected_r)
    expected = {"loss": loss, "dpo_loss": dpo, "nll_loss": nll, "rewards/chosen": chosen_r.mean(),
                "rewards/rejected": rejected_r.mean(), "rewards/margins": (chosen_r - rejected_r).mean(),
                "rewards/accuracies": (chosen_r > rejected_r).double().mean()}
    assert abs(float(expected["rewards/margins"])) > 1e-3  # pi != pi_ref: not the trivial first update
    for name, value in expected.items():
        assert logs[1][name] == pytest.approx(float(value), rel=1e-4, abs=1e-6), name
    for name, p in model.named_parameters():
        torch.testing.assert_close(snapshots.grads[1][name].double(), p.grad, rtol=1e-4, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("shared", [False, True])
def test_continuation_loglik_reward_against_float64_plain_torch(tmp_path, demo_tokenizer, monkeypatch, shared):
    """continuation_loglik = mean over the true continuation's tokens of log pi_ref(c_j | x, y without its stop token,
    c_<j) (temperature 1: the reference's own distribution), recomputed by one full float64 forward per row; with
    shared_prefill forced on for these short repeated prompts (kv_cache.MIN_SAVED_TOKENS) and off."""
    from implicit_reasoning.runtime import kv_cache

    monkeypatch.setattr(kv_cache, "MIN_SAVED_TOKENS", 1 if shared else 10**9)
    calls = []
    original = kv_cache.shared_prefix_cache
    monkeypatch.setattr(kv_cache, "shared_prefix_cache",
                        lambda *a, **k: (lambda c: (calls.append(c is not None), c)[1])(original(*a, **k)))
    config = _config(tmp_path, reward_funcs=["continuation_loglik"], kl_coef=0.3, gamma=1.0, lam=1.0,
                     whiten_advantages=False, temperature=0.7, response_length=6, rollout_batch_size=4)
    trainer = _trainer(config, demo_tokenizer)
    trainer.ref_model.model.layers[0].mlp.down_proj.weight.data.mul_(1.5)  # a reference that differs from the policy
    prompts = trainer.train_dataset.select([0, 0, 1, 1]).to_dict()
    out = trainer.make_rollout(prompts)
    assert any(calls) == shared
    ids, segments = out["input_ids"], out["segment_ids"]
    ref = copy.deepcopy(trainer.ref_model).double().eval()
    stops = set(trainer.stop_ids)
    expected = []
    for i in range(4):
        x = demo_tokenizer(prompts["prompt"][i]).input_ids
        y = [t for t in ids[i][segments[i] == 2].tolist() if t not in stops]
        c = demo_tokenizer(prompts["continuation"][i], add_special_tokens=False).input_ids
        row = torch.tensor([x + y + c])
        with torch.no_grad():
            logp = torch.log_softmax(ref(row).logits[0, :-1].double(), -1)
        start = len(x) + len(y)
        score = float(logp[torch.arange(start - 1, row.shape[1] - 1), row[0, start:]].mean())
        # the KL penalty: -beta sum_t (log pi_old - log pi_ref)(y_t), both at the sampling temperature
        y_all = ids[i][segments[i] == 2].tolist()
        full = torch.tensor([x + y_all])
        with torch.no_grad():
            ref_t = torch.log_softmax(ref(full).logits[0, :-1].double() / 0.7, -1)
        ref_logp = ref_t[torch.arange(len(x) - 1, full.shape[1] - 1), full[0, len(x):]]
        old = out["old_logps"][i, : len(y_all)].double()
        expected.append(score - 0.3 * float((old - ref_logp).sum()))
    # gamma = lam = 1, no whitening: the first token's return is the sum of the row's rewards
    torch.testing.assert_close(out["returns"][:, 0].double(), torch.tensor(expected, dtype=torch.float64),
                               atol=1e-5, rtol=1e-5)


def test_star_trains_on_a_dataset_with_only_the_required_columns(tmp_path, demo_tokenizer, monkeypatch):
    """STaR's required columns are `queries` and `groundtruth` (`question` only to rationalize): a dataset with just
    those two (rationalize=False) failed with KeyError 'question' when the first iteration's samples were recorded."""
    from test_star_trainer import CONFIG, answer_generator, make, solve

    from implicit_reasoning.trainer import STaRConfig
    from implicit_reasoning.trainer.star import trainer as star_trainer
    from implicit_reasoning.data.registry import load_task_dataset

    train = load_task_dataset("arithmetic", "train", demo_tokenizer, dataset_config=CONFIG,
                              cot_trigger=STaRConfig.cot_trigger).select_columns(["queries", "groundtruth"])
    evaluation = load_task_dataset("arithmetic", "eval", demo_tokenizer, dataset_config=CONFIG.replace("=8", "=4"))
    evaluation = evaluation.select_columns(["queries", "groundtruth"])
    monkeypatch.setattr(star_trainer, "generate", answer_generator(demo_tokenizer, solve))  # all correct: kept
    trainer = make(tmp_path, demo_tokenizer, (train, evaluation), num_iterations=1, start_steps=1, rationalize=False)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logged = next(h for h in trainer.state.log_history if "kept_samples" in h)
    assert logged["kept_samples"] == 16
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


def test_sft_checks_the_eval_columns_its_evaluation_reads(tmp_path, demo_tokenizer):
    """SFTBaselineTrainer's evaluation reads `queries` and `groundtruth` (greedy accuracy): an eval set without
    `groundtruth` is an error naming it when the trainer is built (it passed the check of the TRAIN columns and
    failed at the first evaluate(), after training), and one with only those two columns evaluates."""
    import datasets
    from test_sft_update import rows

    from implicit_reasoning.demo import build_demo_model
    from implicit_reasoning.trainer import SFTBaselineConfig, SFTBaselineTrainer

    data = rows()
    args = SFTBaselineConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=1, report_to=[],
                             save_strategy="no", use_cpu=True, disable_tqdm=True, dataset_name="arithmetic",
                             response_length=4, max_eval_samples=2)
    train = datasets.Dataset.from_list(data)

    def build(eval_columns):
        evaluation = datasets.Dataset.from_list([{k: r[k] for k in eval_columns} for r in data])
        model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
        return SFTBaselineTrainer(model, args, train_dataset=train, eval_dataset=evaluation,
                                  processing_class=demo_tokenizer)

    with pytest.raises(ValueError, match="groundtruth"):
        build(("queries", "rationale", "responses"))
    metrics = build(("queries", "groundtruth")).evaluate()
    assert metrics["eval_num_questions"] == 2


VAL_TWO_PROCESSES = """
import sys, torch
from implicit_reasoning.demo import build_demo_model, build_demo_tokenizer
from implicit_reasoning.trainer import PPOCurriculumConfig, PPOCurriculumTrainer

tok = build_demo_tokenizer()
model = build_demo_model(tok, hidden_size=32, intermediate_size=64, num_heads=2)
args = PPOCurriculumConfig(output_dir=sys.argv[1], max_steps=1, per_device_train_batch_size=4, ppo_epochs=1,
    response_length=6, learning_rate=1e-3, dataset_name="arithmetic", whiten_advantages=False,
    dataset_config="num_terms=2,max_value=5,num_examples=32", reward_funcs=["length_reward_module:length_reward", "length_reward_module:sparse_reward"],
    use_cpu=True, ddp_backend="gloo", report_to=[], save_strategy="no", disable_tqdm=True, logging_steps=1)
train = PPOCurriculumTrainer.load_split(args, "train", tok)
trainer = PPOCurriculumTrainer(model, args, train_dataset=train, processing_class=tok)
rollouts, original = [], trainer.make_rollout
trainer.make_rollout = lambda prompts: rollouts.append(original(prompts)) or rollouts[-1]
trainer.train()
rank = trainer.accelerator.process_index
out = rollouts[0]
mask = out["mask"].bool()
logged = next(h for h in trainer.state.log_history if "val/vpred" in h)
import length_reward_module
logged_rewards = {k: v for k, v in logged.items() if k.startswith("rewards/")}
write_rank_result(sys.argv[2], rank, {"values": out["old_values"][mask].tolist(), "sparse": length_reward_module.SEEN,
                                      "rewards": logged_rewards,
                                      "returns": out["returns"][mask].tolist(),
                                      "logged": {k: v for k, v in logged.items() if k.startswith("val/")}})
from implicit_reasoning.pipeline import end_distributed
end_distributed()
"""

LENGTH_REWARD_MODULE = """
import torch

SEEN = []


def length_reward(prompts, completions, completion_ids, **kwargs):
    return [0.25 * len(ids) - 1.0 + 0.5 * (ids[0] % 3) for ids in completion_ids]


def sparse_reward(prompts, completions, completion_ids, **kwargs):
    # applicable to every row on rank 0, to one row on rank 1: the two processes' row counts differ
    rank = torch.distributed.get_rank()
    out = [float(ids[0] % 7) + 0.1 * len(ids) if rank == 0 or i == 0 else None for i, ids in enumerate(completion_ids)]
    SEEN.extend(out)
    return out
"""


def test_two_processes_log_the_rollout_value_statistics_over_all_tokens(tmp_path):
    """val/vpred, val/returns_mean, val/returns_var and val/explained_variance are statistics of the whole rollout's
    tokens (docs: "over all processes"), not a mean of each process's own statistic (a variance and an explained
    variance averaged over processes miss the spread between the processes' means); rewards/<name>/mean is the mean
    over every row the function applies to on all processes, not a mean of the processes' means."""
    import os
    import subprocess

    from conftest import RANK_RESULT, rank_results, torchrun_command

    script = tmp_path / "ppo_val.py"
    script.write_text(RANK_RESULT + VAL_TWO_PROCESSES)
    (tmp_path / "length_reward_module.py").write_text(LENGTH_REWARD_MODULE)
    command = torchrun_command(script, tmp_path / "out", tmp_path / "ranks")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    first, second = rank_results(tmp_path / "ranks")
    values = torch.tensor(first["values"] + second["values"], dtype=torch.float64)
    returns = torch.tensor(first["returns"] + second["returns"], dtype=torch.float64)
    var = ((returns - returns.mean()) ** 2).mean()
    residual = returns - values
    expected = {"val/vpred": values.mean(), "val/returns_mean": returns.mean(), "val/returns_var": var,
                "val/explained_variance": 1 - ((residual - residual.mean()) ** 2).mean() / var}
    for name, value in expected.items():
        assert first["logged"][name] == pytest.approx(float(value), rel=1e-5, abs=1e-7), name
    sparse = [v for v in first["sparse"] + second["sparse"] if v is not None]
    assert len(sparse) == 5  # 4 rows on rank 0, 1 on rank 1
    assert first["rewards"]["rewards/length_reward_module:sparse_reward/mean"] == pytest.approx(sum(sparse) / len(sparse), rel=1e-6)


def test_value_statistics_of_summed_moments_are_those_of_all_the_tokens():
    from implicit_reasoning.objectives import ppo

    torch.manual_seed(0)
    values, returns = torch.randn(6, 5), torch.randn(6, 5) * 2 + 1
    mask = torch.rand(6, 5) > 0.3
    halves = [ppo.value_moments(values[rows], returns[rows], mask[rows]) for rows in (slice(0, 2), slice(2, 6))]
    stats = ppo.value_statistics(halves[0] + halves[1])
    v, r = values[mask].double(), returns[mask].double()
    var = ((r - r.mean()) ** 2).mean()
    expected = {"val/vpred": v.mean(), "val/returns_mean": r.mean(), "val/returns_var": var,
                "val/explained_variance": 1 - ((r - v - (r - v).mean()) ** 2).mean() / var}
    for name, value in expected.items():
        assert stats[name] == pytest.approx(float(value), rel=1e-6), name
    assert math.isnan(ppo.value_statistics(ppo.value_moments(values, torch.ones(6, 5), mask))["val/explained_variance"])


@pytest.mark.parametrize("accumulation", [1, 2])
def test_sft_baseline_updates_and_logged_losses_with_a_short_last_update(tmp_path, demo_tokenizer, accumulation):
    """10 rows, 4 per update (sequential order): updates of rows 0-3, 4-7, then a short one of rows 8-9 (one
    micro-batch under accumulation 2). Each is -LR x the gradient of the token mean over ITS rows (float64 plain
    torch, parameters chained update to update), and each logged loss is that token mean."""
    import datasets
    from test_sft_update import LR, expected_update

    from implicit_reasoning.demo import build_demo_model
    from implicit_reasoning.trainer import SFTBaselineConfig, SFTBaselineTrainer

    data = [{"queries": f"Question: {i} + 2\nLet's think step by step.\n", "rationale": "Hmm. " * (2 * i) + f"{i} + 2.",
             "responses": f" The answer is {i + 2}.", "groundtruth": str(i + 2)} for i in range(10)]
    model = build_demo_model(demo_tokenizer, hidden_size=32, intermediate_size=64, num_heads=2)
    reference = copy.deepcopy(model)
    args = SFTBaselineConfig(output_dir=str(tmp_path), per_device_train_batch_size=4 // accumulation,
                             gradient_accumulation_steps=accumulation, num_train_epochs=1, optim="sgd",
                             learning_rate=LR, lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0,
                             report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=1,
                             train_sampling_strategy="sequential")
    trainer = SFTBaselineTrainer(model, args, train_dataset=datasets.Dataset.from_list(data),
                                 processing_class=demo_tokenizer)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 3 and len(losses) == 3
    for step, rows in enumerate((data[0:4], data[4:8], data[8:10])):
        before = {n: p.detach().clone().double() for n, p in reference.named_parameters()}
        expected = expected_update(demo_tokenizer, reference.eval(), rows)  # reference is float64 from here on
        with torch.no_grad():
            for name, p in reference.named_parameters():
                p.copy_(before[name] + expected[name])
                p.grad = None
        # the logged loss of the update: the token mean over its rows, at the parameters before it
        total, count = 0.0, 0
        with torch.no_grad():
            for r in rows:
                prompt = demo_tokenizer(r["queries"]).input_ids
                completion = (demo_tokenizer(r["rationale"], add_special_tokens=False).input_ids
                              + demo_tokenizer(r["responses"], add_special_tokens=False).input_ids
                              + [demo_tokenizer.eos_token_id])
                ids = torch.tensor([prompt + completion])
                probe = copy.deepcopy(reference)
                for name, p in probe.named_parameters():
                    p.copy_(before[name])
                logps = torch.log_softmax(probe(ids).logits[0, :-1], -1)
                total -= float(logps[torch.arange(len(prompt) - 1, ids.shape[1] - 1), ids[0, len(prompt):]].sum())
                count += len(completion)
        assert losses[step] == pytest.approx(total / count, rel=1e-5), step
    for name, p in trainer.model.named_parameters():
        torch.testing.assert_close(p.detach().double(), dict(reference.named_parameters())[name].detach(),
                                   rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_star_generation_accuracy_reads_cut_off_samples_as_evaluation_does(tmp_path, demo_tokenizer, monkeypatch):
    """A sample cut off at response_length is read only from an answer statement (evaluation's rule): one whose last
    number happens to be the gold answer is not counted as correct in `generation_accuracy` (it was: 1.0 here, on
    samples that are all dropped as unfinished)."""
    from test_star_trainer import CONFIG, answer_generator, make

    from implicit_reasoning.trainer import STaRConfig
    from implicit_reasoning.trainer.star import trainer as star_trainer
    from implicit_reasoning.data.registry import load_task_dataset

    def run_on(prompt):  # the worked sum, then filler: cut off at response_length with the sum as its last number
        terms = [int(t) for t in prompt.split("Question: ")[1].split("\n")[0].split(" + ")]
        return f"{terms[0]} + {terms[1]} = {sum(terms)}" + " x" * 40

    train = load_task_dataset("arithmetic", "train", demo_tokenizer, dataset_config=CONFIG,
                              cot_trigger=STaRConfig.cot_trigger)
    monkeypatch.setattr(star_trainer, "generate", answer_generator(demo_tokenizer, run_on))
    trainer = make(tmp_path, demo_tokenizer, (train, None), num_iterations=1, start_steps=1, rationalize=False,
                   response_length=12)
    trainer.train()
    logged = next(h for h in trainer.state.log_history if "generation_accuracy" in h)
    assert logged["unfinished_samples"] == 16 and logged["kept_samples"] == 0
    assert logged["generation_accuracy"] == 0.0
