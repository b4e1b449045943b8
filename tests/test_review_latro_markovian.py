"""Independent review of LatroTrainer / MarkovianTrainer: one whole update (trainer.train(), SGD, one step)
recomputed in float64 plain torch from the rollout's tokens alone (own log-softmax, RLOO, z-score, KL, entropy),
with shared_prefill on and off and gradient accumulation 1 and 2: every logged quantity and the parameter update."""

import copy
import math

import pytest
import torch

from implicit_reasoning.runtime import kv_cache

SGD = dict(optim="sgd", weight_decay=0.0, max_grad_norm=0.0, lr_scheduler_type="constant", warmup_steps=0,
           max_steps=1, learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to="none",
           disable_tqdm=True, use_cpu=True)


pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest.py)


# ------------------------------------------------------------------------ plain float64 helpers (no project code)
def logprobs64(model, ids: list[int]) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t >= 1, one unpadded row, float64, own log-softmax."""
    logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].double()
    logz = logits.max(-1, keepdim=True).values
    logz = logz + (logits - logz).exp().sum(-1, keepdim=True).log()
    return (logits - logz).gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)


def dists64(model, ids: list[int]) -> torch.Tensor:
    """(T-1, V) float64 log-distributions predicting ids[1:], own log-softmax."""
    logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].double()
    logz = logits.max(-1, keepdim=True).values
    return logits - (logz + (logits - logz).exp().sum(-1, keepdim=True).log())


def segments(row_ids, row_segments, n):
    """Token lists of segments 1..n of one packed row."""
    return [[int(t) for t, s in zip(row_ids, row_segments) if s == j] for j in range(1, n + 1)]


def rel(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max()), float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def perturbed(model, scale=0.05, seed=3):
    """Move the policy away from its reference (a KL that is not 0), in place."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))


def perturbed_adapter(model, scale=0.3, seed=3):
    """Move a LoRA adapter off zero (its B starts at 0, where the policy is its reference)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.add_(scale * torch.randn(p.shape, generator=generator))


def metric(log, name):
    return next(entry[name] for entry in log if name in entry)


def check(name, got, expected, atol, rtol, report):
    diff, rdiff = rel(got, expected)
    report[name] = (diff, rdiff)
    assert diff <= atol + rtol * float(torch.as_tensor(expected, dtype=torch.float64).abs().max()), (name, got,
                                                                                                     expected)


# -------------------------------------------------------------------------------------------------- LaTRO
@pytest.mark.parametrize("shared", [False, True], ids=["full", "shared-prefill"])
@pytest.mark.parametrize("accumulation", [1, 2])
@pytest.mark.parametrize("from_generation", [True, False], ids=["scored-gen", "full-pass"])
def test_latro_update_recomputed_in_float64(tmp_path, tiny_llama, demo_tokenizer, addition_dataset, monkeypatch,
                                            shared, accumulation, from_generation):
    _latro_update_check(tmp_path, tiny_llama, demo_tokenizer, addition_dataset, monkeypatch, shared, accumulation,
                        from_generation)


@pytest.mark.parametrize(("shared", "accumulation", "from_generation"), [(True, 2, True), (False, 1, False)])
def test_latro_lora_update_from_a_peft_config_recomputed_in_float64(tmp_path, tiny_llama, demo_tokenizer,
                                                                    addition_dataset, monkeypatch, shared,
                                                                    accumulation, from_generation):
    """peft_config=: the adapter-disabled base is the reference; only the adapter moves, by the float64 gradient."""
    from peft import LoraConfig

    tiny_llama.save_pretrained(tmp_path / "base")
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], task_type="CAUSAL_LM")
    _latro_update_check(tmp_path, tiny_llama, demo_tokenizer, addition_dataset, monkeypatch, shared, accumulation,
                        from_generation, peft_config=lora, model_name_or_path=str(tmp_path / "base"))


def _latro_update_check(tmp_path, tiny_llama, demo_tokenizer, addition_dataset, monkeypatch, shared, accumulation,
                        from_generation, peft_config=None, **overrides):
    from implicit_reasoning.trainer import LatroConfig, LatroTrainer

    monkeypatch.setattr(kv_cache, "MIN_SAVED_TOKENS", 1)  # tiny prompts: share whatever repeats
    k, prompts, length, kl_coef, sft_coef, penalty = 3, 2, 6, 0.3, 0.7, 2.0
    args = LatroConfig(output_dir=str(tmp_path), rloo_k=k, per_device_train_batch_size=k * prompts,
                       gradient_accumulation_steps=accumulation, response_length=length, rollout_batch_size=4,
                       kl_coef=kl_coef, sft_coef=sft_coef, penalty_reward_value=penalty, non_stop_penalty=True,
                       shared_prefill=shared, score_from_generation=from_generation, seed=7,
                       stop_token_ids=list(range(100, 200)), **SGD, **overrides)  # ~1 token in 6 stops
    trainer = LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer,
                           peft_config=peft_config)
    assert trainer.share_prefill_with_grad == shared
    perturbed(trainer.model) if peft_config is None else perturbed_adapter(trainer.model)
    policy64 = copy.deepcopy(trainer.model).double().eval()
    with trainer.reference_model() as ref:
        ref64 = copy.deepcopy(ref).double().eval()
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    rollouts = []
    make_rollout = trainer.make_rollout
    trainer.make_rollout = lambda p: rollouts.append(make_rollout(p)) or rollouts[-1]
    trainer.train()
    assert len(rollouts) == 1
    batch, log = rollouts[0], trainer.state.log_history

    # the rollout's tokens: x, z, y per sample (prompt-major), stopped = cut before response_length
    rows = [segments(i, s, 3) for i, s in zip(batch["input_ids"].tolist(), batch["segment_ids"].tolist())]
    stopped = torch.tensor([len(z) < length for _, z, _ in rows])
    assert 0 < int(stopped.sum()) < len(rows)  # the non-stop penalty and ragged rationales are exercised
    lpz, lpy, ref_lpz = [], [], []
    with torch.no_grad():
        for x, z, y in rows:
            lp = logprobs64(policy64, x + z + y)
            lpz.append(lp[len(x) - 1 : len(x) + len(z) - 1].sum())
            lpy.append(lp[len(x) + len(z) - 1 :].sum())
            ref_lpz.append(logprobs64(ref64, x + z)[len(x) - 1 :].sum())
    lpz, lpy, ref_lpz = torch.stack(lpz), torch.stack(lpy), torch.stack(ref_lpz)
    group_mean = lpy.view(-1, k).mean(1).repeat_interleave(k)
    reward = torch.where(stopped, lpy, penalty * group_mean)
    kl = lpz - ref_lpz
    r = reward - kl_coef * kl
    grouped = r.view(-1, k)
    advantages = (grouped - (grouped.sum(1, keepdim=True) - grouped) / (k - 1)).view(-1)

    report = {}
    check("advantages", batch["advantages"].cpu(), advantages, 2e-4, 1e-4, report)
    for name, expected in (("reward", reward.mean()), ("kl", kl.mean()), ("r", r.mean()),
                           ("advantage_mean", advantages.mean()), ("advantage_std", advantages.std()),
                           ("rationale_length", torch.tensor([float(len(z)) for _, z, _ in rows]).mean()),
                           ("stop_fraction", stopped.double().mean())):
        check(name, metric(log, name), expected, 2e-4, 1e-4, report)

    # the update: mean over micro-batches of -mean[A log pi(z|x) + sft log pi(y|x,z)], SGD step
    micro = len(rows) // accumulation
    policy_grad = copy.deepcopy(policy64).train()
    losses, policy_losses, answer_losses = [], [], []
    for m in range(accumulation):
        part = range(m * micro, (m + 1) * micro)
        lz, ly = [], []
        for i in part:
            x, z, y = rows[i]
            lp = logprobs64(policy_grad, x + z + y)
            lz.append(lp[len(x) - 1 : len(x) + len(z) - 1].sum())
            ly.append(lp[len(x) + len(z) - 1 :].sum())
        policy_loss = -(advantages[list(part)] * torch.stack(lz)).mean()
        answer_loss = -torch.stack(ly).mean()
        loss = policy_loss + sft_coef * answer_loss
        (loss / accumulation).backward()
        losses.append(loss.item()), policy_losses.append(policy_loss.item()), answer_losses.append(answer_loss.item())
    check("policy_loss", metric(log, "policy_loss"), sum(policy_losses) / accumulation, 2e-4, 1e-4, report)
    check("answer_loss", metric(log, "answer_loss"), sum(answer_losses) / accumulation, 2e-4, 1e-4, report)
    check("loss", metric(log, "loss"), sum(losses) / accumulation, 2e-4, 1e-4, report)
    grads = dict(policy_grad.named_parameters())
    for n, p in trainer.model.named_parameters():
        step = (before[n] - p.detach()).double() / args.learning_rate
        expected = grads[n].grad if grads[n].grad is not None else torch.zeros_like(step)
        check(f"update:{n}", step, expected, 1e-4, 2e-3, report)
    if peft_config is not None:  # the case this path is about: the adapter moved, the base did not
        assert all(torch.equal(before[n], p) for n, p in trainer.model.named_parameters() if "lora_" not in n)
        assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters() if "lora_" in n)
    print({k_: v for k_, v in report.items() if not k_.startswith("update:")},
          "update max", max(v for k_, v in report.items() if k_.startswith("update:")))


# ---------------------------------------------------------------------------------------------- Markovian
@pytest.fixture(scope="module")
def markovian_data():
    from implicit_reasoning.demo import build_demo_tokenizer
    from implicit_reasoning.data.registry import load_markovian_examples

    tok = build_demo_tokenizer()
    return tok, load_markovian_examples("arithmetic", "train", tok, dataset_config="num_terms=3,max_value=20,num_examples=8")


def markovian_run(tmp_path, markovian_data, monkeypatch, policy_train: bool, **fields):
    """A Markovian run of the review's shape (K=3, 2 questions per update, 5-token CoTs) from a perturbed demo model:
    the trainer after train(), float64 copies of the policy and critic before it, the parameters before it, and
    every rollout as (drawn prompts, batch)."""
    from implicit_reasoning.demo import build_demo_model
    from implicit_reasoning.trainer import MarkovianConfig, MarkovianTrainer

    monkeypatch.setattr(kv_cache, "MIN_SAVED_TOKENS", 1)
    tok, data = markovian_data
    args = MarkovianConfig(output_dir=str(tmp_path), rloo_k=3, per_device_train_batch_size=6, cot_length=5,
                           rollout_batch_size=4, max_prompt_length=96, seed=5, **{**SGD, **fields})
    model = build_demo_model(tok, hidden_size=32, num_layers=2, intermediate_size=64, seed=0)
    trainer = MarkovianTrainer(model, args, train_dataset=data, processing_class=tok)
    perturbed(trainer.model, scale=0.1)
    policy64 = copy.deepcopy(trainer.model).double().train(policy_train)
    with trainer.reference_model() as ref:
        critic64 = copy.deepcopy(ref).double().eval()
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    seen = []
    make_rollout = trainer.make_rollout
    trainer.make_rollout = lambda p: seen.append((p, make_rollout(p))) or seen[-1][1]
    trainer.train()
    return trainer, policy64, critic64, before, seen


@pytest.mark.parametrize("shared", [False, True], ids=["full", "shared-prefill"])
@pytest.mark.parametrize("accumulation", [1, 2])
@pytest.mark.parametrize("terms", [dict(kl_penalty=0.3, entropy_bonus=0.05), dict(kl_penalty=0.0, entropy_bonus=0.0)],
                         ids=["kl-entropy", "pg-only"])
def test_markovian_pg_update_recomputed_in_float64(tmp_path, markovian_data, monkeypatch, shared, accumulation, terms):
    tok, _ = markovian_data
    k, cot_length = 3, 5
    trainer, policy64, critic64, before, seen = markovian_run(
        tmp_path, markovian_data, monkeypatch, False, gradient_accumulation_steps=accumulation, shared_prefill=shared,
        method="pg", **terms)
    assert len(seen) == 1
    (drawn, batch), log = seen[0], trainer.state.log_history
    questions, answers = drawn["question"], drawn["answer"]
    rows = [segments(i, s, 2) for i, s in zip(batch["input_ids"].tolist(), batch["segment_ids"].tolist())]
    end_ids = set(trainer.end_ids)
    assert all(len(cot) == cot_length and not end_ids & set(cot) for _, cot in rows)  # suppress: exactly cot_length

    def answer_mean_logprob(model, question, cot, answer):
        prefix, marker, y = trainer.prompts.scoring_ids(question), trainer.prompts.marker_ids, trainer.prompts.answer_ids(answer)
        return logprobs64(model, prefix + cot + marker + y)[-len(y):].mean()

    with torch.no_grad():
        scores = torch.stack([answer_mean_logprob(critic64, questions[i // k], cot, answers[i // k])
                              for i, (_, cot) in enumerate(rows)])
        base = []
        for q, a in zip(questions, answers):
            base_cot = trainer._baseline_cache[(q, a)][0]
            x = trainer.prompts.actor_ids(q)
            dist = dists64(critic64, x + base_cot)[len(x) - 1 :]  # the critic's greedy CoT', end ids suppressed
            dist[:, list(end_ids)] = -math.inf
            chosen = dist.gather(-1, torch.tensor(base_cot).unsqueeze(-1)).squeeze(-1)
            assert len(base_cot) == cot_length and bool((chosen >= dist.max(-1).values - 1e-4).all())
            base.append(answer_mean_logprob(critic64, q, base_cot, a))
        base = torch.stack(base)
    rewards = scores - base.repeat_interleave(k)
    grouped = rewards.view(-1, k)
    advantages = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, unbiased=False, keepdim=True) + 1e-8)
                  ).view(-1)
    report = {}
    check("advantages", batch["advantages"].cpu(), advantages, 1e-4, 1e-4, report)
    for name, expected in (("reward", rewards.mean()), ("scorer_logprob", scores.mean()),
                           ("baseline_logprob", base.mean()), ("advantage_mean", advantages.mean()),
                           ("advantage_std", advantages.std())):
        check(name, metric(log, name), expected, 2e-4, 1e-4, report)

    micro = len(rows) // accumulation
    policy_grad = copy.deepcopy(policy64).train()
    parts = {"policy_loss": [], "entropy": [], "kl": [], "loss": []}
    for m in range(accumulation):
        pg, entropy, kl = [], [], []
        for i in range(m * micro, (m + 1) * micro):
            x, cot = rows[i]
            logp = dists64(policy_grad, x + cot)[len(x) - 1 :]
            with torch.no_grad():
                logq = dists64(critic64, x + cot)[len(x) - 1 :]
            pg.append(advantages[i] * logp.gather(-1, torch.tensor(cot).unsqueeze(-1)).mean())
            entropy.append(-(logp.exp() * logp).sum(-1).mean())
            kl.append((logp.exp() * (logp - logq)).sum(-1).mean())
        policy_loss, entropy, kl = -torch.stack(pg).mean(), torch.stack(entropy).mean(), torch.stack(kl).mean()
        loss = policy_loss + terms["kl_penalty"] * kl - terms["entropy_bonus"] * entropy
        (loss / accumulation).backward()
        for name, value in (("policy_loss", policy_loss), ("entropy", entropy), ("kl", kl), ("loss", loss)):
            parts[name].append(value.item())
    for name, values in parts.items():
        if name != "kl" or terms["kl_penalty"] > 0:
            check(name, metric(log, name), sum(values) / accumulation, 2e-4, 1e-4, report)
    grads = dict(policy_grad.named_parameters())
    for n, p in trainer.model.named_parameters():
        step = (before[n] - p.detach()).double() / trainer.args.learning_rate
        expected = grads[n].grad if grads[n].grad is not None else torch.zeros_like(step)
        check(f"update:{n}", step, expected, 1e-4, 2e-3, report)
    print({k_: v for k_, v in report.items() if not k_.startswith("update:")},
          "update max", max(v for k_, v in report.items() if k_.startswith("update:")))


# ------------------------------------------------------------------------------- disable_dropout, every kind
def _opt():
    from transformers import OPTConfig, OPTForCausalLM

    return OPTForCausalLM(OPTConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, ffn_dim=32,
                                    num_attention_heads=2, max_position_embeddings=64, word_embed_proj_dim=16,
                                    dropout=0.5, attention_dropout=0.5, activation_dropout=0.5))


def _bloom():
    from transformers import BloomConfig, BloomForCausalLM

    return BloomForCausalLM(BloomConfig(vocab_size=50, hidden_size=16, n_layer=2, n_head=2, hidden_dropout=0.5,
                                        attention_dropout=0.5))


def _falcon():
    from transformers import FalconConfig, FalconForCausalLM

    return FalconForCausalLM(FalconConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                          hidden_dropout=0.5, attention_dropout=0.5))


@pytest.mark.parametrize("build", [_opt, _bloom, _falcon], ids=["opt", "bloom", "falcon"])
def test_disable_dropout_turns_off_functional_dropout_too(build):
    """OPT's float `dropout` / `activation_dropout`, Bloom's `hidden_dropout` and Falcon's `config.hidden_dropout` feed
    F.dropout directly: disable_dropout=True (and the exactness of share_prefill_with_grad, PPO's ratio of 1) needs
    them off too, while the saved config stays as shipped."""
    from implicit_reasoning.runtime.models import disable_dropout

    torch.manual_seed(0)
    model = build()
    shipped = model.config.to_dict()
    disable_dropout(model)
    ids = torch.randint(3, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.eval()(input_ids=ids).logits
        model.train()
        first, second = model(input_ids=ids).logits, model(input_ids=ids).logits
    torch.testing.assert_close(first, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(second, expected, atol=1e-6, rtol=0)
    assert model.config.to_dict() == shipped


def test_disable_dropout_leaves_modules_that_only_read_rates_at_init_on_the_models_config():
    """Llama's attention keeps its own float rate (zeroed) and reads its config at run time for other things
    (`_attn_implementation`): it must keep sharing the model's config object."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from implicit_reasoning.runtime.models import disable_dropout

    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, attention_dropout=0.5))
    disable_dropout(model)
    assert all(m.config is model.config for m in model.modules() if isinstance(vars(m).get("config"), type(model.config)))
    assert all(m.attention_dropout == 0.0 for m in model.modules() if hasattr(m, "attention_dropout"))


def test_a_peft_config_with_lora_dropout_under_disable_dropout_is_an_error(tmp_path, tiny_llama, demo_tokenizer,
                                                                           addition_dataset):
    """lora_dropout=0.05 (TRL's examples) in a peft_config= would be zeroed silently by disable_dropout=True, as the
    config's own lora_dropout would: the same error, naming both."""
    from peft import LoraConfig

    from implicit_reasoning.trainer import LatroConfig, LatroTrainer

    tiny_llama.save_pretrained(tmp_path / "base")
    args = LatroConfig(output_dir=str(tmp_path / "out"), rloo_k=2, per_device_train_batch_size=4,
                       model_name_or_path=str(tmp_path / "base"), report_to="none", use_cpu=True)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    with pytest.raises(ValueError, match=r"lora_dropout=0\.05.*disable_dropout"):
        LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer,
                     peft_config=lora)
    args.disable_dropout = False  # dropout wanted: the adapter keeps it
    trainer = LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer,
                           peft_config=lora)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.05 for m in trainer.model.modules())


# ------------------------------------------------------------- gradient checkpointing switched on in the model
def test_gradient_checkpointing_on_the_model_itself_keeps_the_grad_pass_unshared(tmp_path, tiny_llama, demo_tokenizer,
                                                                                 addition_dataset):
    """A model handed over with gradient checkpointing already on (args.gradient_checkpointing False) cannot share
    its prompts with grad either (its layers drop the cache in training)."""
    from implicit_reasoning.trainer import LatroConfig, LatroTrainer

    getattr(tiny_llama, "activation_checkpointing_enable", tiny_llama.gradient_checkpointing_enable)()
    args = LatroConfig(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, report_to="none",
                       use_cpu=True)
    trainer = LatroTrainer(tiny_llama, args, train_dataset=addition_dataset, processing_class=demo_tokenizer)
    assert trainer.share_prefill and not trainer.share_prefill_with_grad


def test_a_forward_that_returns_no_cache_does_not_turn_sharing_off_for_the_model_class(monkeypatch):
    """Training mode under gradient checkpointing returns no cache: that call runs in full, but generation (eval mode)
    of the same model class must still share its prompts afterwards."""
    import warnings

    from test_shared_prefill import DISTINCT, llama

    from implicit_reasoning.scoring.packing import pack_rows
    from implicit_reasoning.scoring.window import window_logprobs

    monkeypatch.setattr(kv_cache, "MIN_SAVED_TOKENS", 1)
    monkeypatch.setattr(kv_cache, "_UNEXPANDABLE", {})
    model = llama()
    getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    model.train()
    prompts = [DISTINCT[i % 4] for i in range(12)]
    rows = pack_rows([prompts, [[20 + i % 5] * (1 + i % 3) for i in range(12)]], 0, align=1)
    scored = rows["segment_ids"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shared, _ = window_logprobs(model, rows, scored, shared_prefill=True)
    full, _ = window_logprobs(model, rows, scored)
    torch.testing.assert_close(shared, full, atol=1e-5, rtol=0)
    assert not kv_cache._UNEXPANDABLE
    from implicit_reasoning.generation.sampling import left_pad

    ids, mask = left_pad(prompts, 0)
    assert kv_cache.generation_prompt_cache(model.eval(), ids, mask)  # generation still shares its prompts


@pytest.mark.parametrize("shared", [False, True], ids=["full", "shared-prefill"])
@pytest.mark.parametrize("accumulation", [1, 2])
def test_markovian_ppo_two_updates_from_one_rollout_recomputed_in_float64(tmp_path, markovian_data, monkeypatch, shared,
                                                                         accumulation):
    """ppo_epochs=2: update 1 at ratio 1 (old log-probs written on pass 0), update 2 clipped against them."""
    tok, _ = markovian_data
    eps, kl_penalty, lr = 0.02, 0.2, 0.5
    trainer, policy64, critic64, before, seen = markovian_run(
        tmp_path, markovian_data, monkeypatch, True, gradient_accumulation_steps=accumulation, shared_prefill=shared,
        method="ppo", ppo_epochs=2, ppo_epsilon=eps, kl_penalty=kl_penalty, entropy_bonus=0.0, max_steps=2,
        learning_rate=lr)
    assert len(seen) == 1
    batch, log = seen[0][1], [entry for entry in trainer.state.log_history if "policy_loss" in entry]
    rows = [segments(i, s, 2) for i, s in zip(batch["input_ids"].tolist(), batch["segment_ids"].tolist())]
    advantages = batch["advantages"].cpu().double()  # recomputed in the pg test; here the PPO update on top of them
    report, micro = {}, len(rows) // accumulation
    old = None
    for update in range(2):
        policy64.zero_grad(set_to_none=True)
        parts = {"policy_loss": [], "kl": [], "ratio": [], "clip_fraction": [], "loss": []}
        token_logps = []
        for m in range(accumulation):
            objective, kls, ratios, clipped, lps = [], [], [], [], []
            for i in range(m * micro, (m + 1) * micro):
                x, cot = rows[i]
                logp = dists64(policy64, x + cot)[len(x) - 1 :]
                with torch.no_grad():
                    logq = dists64(critic64, x + cot)[len(x) - 1 :]
                lp = logp.gather(-1, torch.tensor(cot).unsqueeze(-1)).squeeze(-1)
                lps.append(lp.detach())
                ratio = torch.exp(lp - (lp.detach() if old is None else old[i]))
                surrogate = torch.minimum(ratio * advantages[i], ratio.clamp(1 - eps, 1 + eps) * advantages[i])
                objective.append(surrogate.mean())
                kls.append((logp.exp() * (logp - logq)).sum(-1).mean())
                ratios.append(ratio.detach())
                clipped.append((ratio.clamp(1 - eps, 1 + eps) * advantages[i] < ratio * advantages[i]).double().detach())
            policy_loss, kl = -torch.stack(objective).mean(), torch.stack(kls).mean()
            loss = policy_loss + kl_penalty * kl
            (loss / accumulation).backward()
            token_logps += lps
            for name, value in (("policy_loss", policy_loss), ("kl", kl), ("ratio", torch.cat(ratios).mean()),
                                ("clip_fraction", torch.cat(clipped).mean()), ("loss", loss)):
                parts[name].append(float(value.detach()))
        if old is None:
            old = token_logps
        for name, values in parts.items():
            check(f"{name}@{update + 1}", log[update][name], sum(values) / accumulation, 2e-4, 1e-4, report)
        with torch.no_grad():
            for p in policy64.parameters():
                p -= lr * p.grad
    assert log[1]["clip_fraction"] > 0 and log[0]["ratio"] == pytest.approx(1.0)  # the cases this test is about
    trained = dict(trainer.model.named_parameters())
    for n, p in policy64.named_parameters():
        check(f"params:{n}", trained[n].detach().double() - before[n].double(), p.detach() - before[n].double(),
              2e-5, 2e-3, report)
    print({k_: v for k_, v in report.items() if not k_.startswith("params:")},
          "params max", max(v for k_, v in report.items() if k_.startswith("params:")))


@pytest.mark.parametrize(("shared", "accumulation"), [(False, 1), (True, 2)])
def test_markovian_ei_update_recomputed_in_float64(tmp_path, markovian_data, monkeypatch, shared, accumulation):
    """EI: keep R > mean + ei_std * std of the history (this batch included); the update is the mean over the kept
    samples of -mean_t log pi(CoT_t), whatever micro-batch they fall in."""
    tok, _ = markovian_data
    k, ei_std = 3, 0.3
    trainer, policy64, critic64, before, seen = markovian_run(
        tmp_path, markovian_data, monkeypatch, True, gradient_accumulation_steps=accumulation, shared_prefill=shared,
        method="ei", ei_std=ei_std, ei_warmup=0, kl_penalty=0.0)
    (drawn, batch), log = seen[0], trainer.state.log_history
    rows = [segments(i, s, 2) for i, s in zip(batch["input_ids"].tolist(), batch["segment_ids"].tolist())]

    def answer_mean_logprob(question, cot, answer):
        prefix, marker, y = trainer.prompts.scoring_ids(question), trainer.prompts.marker_ids, trainer.prompts.answer_ids(answer)
        return logprobs64(critic64, prefix + cot + marker + y)[-len(y):].mean()

    with torch.no_grad():
        rewards = torch.stack([
            answer_mean_logprob(drawn["question"][i // k], cot, drawn["answer"][i // k])
            - answer_mean_logprob(drawn["question"][i // k], trainer._baseline_cache[
                (drawn["question"][i // k], drawn["answer"][i // k])][0], drawn["answer"][i // k])
            for i, (_, cot) in enumerate(rows)])
    threshold = rewards.mean() + ei_std * rewards.std(unbiased=False)
    kept = rewards > threshold
    assert 0 < int(kept.sum()) < len(rows) and float((rewards - threshold).abs().min()) > 1e-4  # no near-tie
    report = {}
    check("ei_threshold", metric(log, "ei_threshold"), threshold, 1e-5, 1e-4, report)
    check("ei_kept_fraction", metric(log, "ei_kept_fraction"), kept.double().mean(), 1e-6, 0, report)
    check("weights", batch["weights"].cpu(), kept.double() * len(rows) / int(kept.sum()), 0, 1e-6, report)
    objective = []
    for i in torch.nonzero(kept).flatten().tolist():
        x, cot = rows[i]
        objective.append(logprobs64(policy64, x + cot)[len(x) - 1 :].mean())
    (-torch.stack(objective).mean()).backward()
    for n, p in trainer.model.named_parameters():
        grad = dict(policy64.named_parameters())[n].grad
        check(f"update:{n}", (before[n] - p.detach()).double() / trainer.args.learning_rate,
              grad if grad is not None else torch.zeros_like(p, dtype=torch.float64), 1e-4, 2e-3, report)
    print(report["ei_threshold"], report["weights"], "update max",
          max(v for k_, v in report.items() if k_.startswith("update:")))


# ------------------------------------------------------------------------ a failed evaluation keeps the last one
def test_an_evaluation_that_fails_while_writing_leaves_the_finished_ones_files(tmp_path, tiny_model_dir, monkeypatch):
    """predictions.jsonl and summary.json of a finished evaluation stay a matching pair when a later evaluation into
    the same directory dies while writing its own (was: predictions.jsonl truncated beside the old summary)."""
    import json

    from implicit_reasoning import evaluate as evaluate_module
    from implicit_reasoning.evaluate import EvaluationArguments, run_evaluation

    def run(num_examples):
        return run_evaluation(
            EvaluationArguments(model_name_or_path=str(tiny_model_dir), trainer="markovian", dataset_name="arithmetic",
                                dataset_config=f"num_terms=2,max_value=5,num_examples={num_examples}",
                                output_dir=str(tmp_path)),
            overrides={"cot_length": 2},
        )

    run(2)
    finished = {name: (tmp_path / name).read_bytes() for name in ("predictions.jsonl", "summary.json")}
    calls, dumps = [], json.dumps

    def failing_dumps(obj, *args, **kwargs):
        calls.extend([1] if isinstance(obj, dict) and "query" in obj else [])  # a record of predictions.jsonl
        if len(calls) == 2:
            raise OSError("disk full")
        return dumps(obj, *args, **kwargs)

    monkeypatch.setattr(evaluate_module.json, "dumps", failing_dumps)
    with pytest.raises(OSError, match="disk full"):
        run(3)
    monkeypatch.undo()
    assert {name: (tmp_path / name).read_bytes() for name in finished} == finished
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.jsonl", "summary.json"]  # no temporary left


def test_markovian_baselines_follow_a_refreshed_critic(tmp_path, markovian_data):
    """CoT' and log P_critic(y | x~, CoT') are cached as constants of the frozen critic: refresh_reference() changes
    the critic, so the next rollout must not reuse the old critic's baselines."""
    from implicit_reasoning.demo import build_demo_model
    from implicit_reasoning.trainer import MarkovianConfig, MarkovianTrainer

    tok, data = markovian_data
    args = MarkovianConfig(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=4, cot_length=4,
                           rollout_batch_size=4, max_prompt_length=96, report_to="none", use_cpu=True)
    trainer = MarkovianTrainer(build_demo_model(tok, hidden_size=32, num_layers=2, intermediate_size=64, seed=0), args,
                               train_dataset=data, processing_class=tok)
    questions, answers = list(data["question"][:2]), list(data["answer"][:2])
    x = [trainer.prompts.actor_ids(q) for q in questions]
    before = trainer._critic_baseline(questions, answers, x)[1]
    perturbed(trainer.model, scale=0.3)
    trainer.refresh_reference()
    cached = trainer._critic_baseline(questions, answers, x)[1]
    trainer._baseline_cache.clear()
    fresh = trainer._critic_baseline(questions, answers, x)[1]
    assert not torch.equal(fresh, before)  # precondition: the critic did change
    torch.testing.assert_close(cached, fresh)


# ------------------------------------------------------------------- the critic's answer budget, every process alike
def test_the_markovian_answer_budget_is_the_whole_evaluations_not_each_shards(monkeypatch, demo_tokenizer, tiny_llama,
                                                                              tmp_path):
    """Budget: EVAL_ANSWER_TOKENS or the longest gold answer of the EVALUATION, so that a question gets the same budget
    (and the same cut_off) however many processes share the evaluation (was: each shard's own longest answer)."""
    import datasets
    from test_eval_budget import COMMON, _fake_generate

    from implicit_reasoning.trainer import MarkovianConfig, MarkovianTrainer
    from implicit_reasoning.trainer.markovian import trainer as markovian_trainer
    from implicit_reasoning.runtime.models import prepare_tokenizer

    tok = prepare_tokenizer(demo_tokenizer)
    fake, calls = _fake_generate(lambda n: [tok(" 7", add_special_tokens=False).input_ids + [tok.eos_token_id]] * n)
    monkeypatch.setattr(markovian_trainer, "generate", fake)
    long_answer = " ".join(str(i % 10) for i in range(60))
    data = datasets.Dataset.from_dict({"question": ["3 + 4", "1 + 6"], "answer": [long_answer, "7"]})
    config = MarkovianConfig(output_dir=str(tmp_path), rloo_k=2, per_device_train_batch_size=2, cot_length=5, **COMMON)
    trainer = MarkovianTrainer(tiny_llama, config, eval_dataset=data, processing_class=tok)
    trainer.evaluation_records(trainer.model, data)
    budget = calls[-1].max_new_tokens
    assert budget == len(trainer.prompts.answer_ids(long_answer)) > 32  # one process: the longest answer
    calls.clear()
    accelerator = type(trainer.accelerator)
    monkeypatch.setattr(accelerator, "num_processes", property(lambda self: 2))
    monkeypatch.setattr(accelerator, "process_index", property(lambda self: 1))  # this rank holds only "7"
    trainer.evaluation_records(trainer.model, data)
    assert calls[-1].max_new_tokens == budget


# --------------------------------------------------------------------------- VQ: K copies of one deterministic row
def test_vq_with_deterministic_codes_says_that_its_k_samples_are_copies(tmp_path):
    """use_vq with argmax codes (the default) quantises the same hidden states to the same codes: the rloo_k rows of a
    question are identical, so rloo_k > 1 only repeats work (and fits fewer questions in a batch). Say so."""
    import warnings

    from implicit_reasoning.trainer import MarkovianConfig

    def warned(**overrides):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            MarkovianConfig(output_dir=str(tmp_path), use_vq=True, per_device_train_batch_size=4, report_to="none",
                            use_cpu=True, **overrides)
        return [str(w.message) for w in caught if "rloo_k" in str(w.message)]

    assert warned(rloo_k=4) and "rloo_k=4" in warned(rloo_k=4)[0]
    assert not warned(rloo_k=1)
    assert not warned(rloo_k=4, vq_use_argmax=False)  # sampled codes: the K rows differ
    assert not warned(rloo_k=4, vq_gumbel_softmax=True)
