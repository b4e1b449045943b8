"""STaR pieces by hand: the step schedule, filtering, DPO pairs, the degeneration measure, and DPO against TRL's."""

import unicodedata
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from implicit_reasoning.objectives.dpo import dpo_loss
from implicit_reasoning.objectives.star import (
    degeneration_rate,
    dpo_pairs,
    is_degenerate,
    kept,
    locate_step,
    repetition_coverage,
    step_schedule,
    unsolved,
    with_hint,
)

YORUBA_DEGENERATE = "Ṣeese esi lati " + "ṣe " * 60 + "..."
YORUBA_HEALTHY = (
    "Ipa italẹ fun awọn ohun elo ti awọn asidi ọra polyunsaturated adayeba ninu awọn epo ẹfọ ni. "
    "Awọn asidi ọra polyunsaturated ni awọn asidi ọra ti o ni iwe ifowopamọ carbon-carbon meji."
)


def record(question, correct, hinted=False, sample=0):
    return {"question_index": question, "prompt": f"q{question}", "rationale": f"r{question}.{sample}",
            "correct": correct, "hinted": hinted}


def test_step_schedule_grows_by_step_growth_and_locates_steps():
    assert step_schedule(3, 40, 1.2) == [40, 48, 57]  # floor(40 * 1.2 ** n)
    assert step_schedule(2, 5, 1.0) == [5, 5]
    assert [locate_step(s, [2, 3]) for s in range(5)] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    with pytest.raises(ValueError, match="past the schedule"):
        locate_step(5, [2, 3])


def test_filtering_keeps_correct_samples_and_finds_unsolved_questions():
    records = [record(0, True), record(0, False, sample=1), record(1, False), record(1, False, sample=1),
               record(2, False), record(2, True, hinted=True)]
    assert [r["rationale"] for r in kept(records)] == ["r0.0", "r2.0"]  # a correct rationalization is kept
    assert unsolved(records) == [1, 2]  # a hinted success does not make a question solved
    assert with_hint("Question: 3 + 4", "7") == "Question: 3 + 4\n(Hint: the correct answer is 7.)"


def test_dpo_pairs_are_every_correct_incorrect_pair_within_a_question():
    records = [record(0, True, sample=0), record(0, False, sample=1), record(0, True, sample=2),
               record(0, False, sample=3), record(1, True), record(1, True, sample=1),  # all correct: no pair
               record(2, False), record(2, False, sample=1),  # all wrong: no pair
               record(3, True), record(3, False, sample=1), record(3, True, hinted=True, sample=2)]
    pairs = [(w["rationale"], l["rationale"]) for w, l in dpo_pairs(records)]
    assert pairs == [("r0.0", "r0.1"), ("r0.0", "r0.3"), ("r0.2", "r0.1"), ("r0.2", "r0.3"), ("r3.0", "r3.1"),
                     ("r3.2", "r3.1")]  # a rationalization is a correct sample of its question too
    assert all(w.split(".")[0] == l.split(".")[0] for w, l in pairs)  # never across questions


def test_degeneration_on_crafted_strings_of_any_script():
    assert is_degenerate(YORUBA_DEGENERATE) and repetition_coverage(YORUBA_DEGENERATE) > 0.9
    assert not is_degenerate(YORUBA_HEALTHY) and repetition_coverage(YORUBA_HEALTHY) < 0.3
    decomposed = unicodedata.normalize("NFD", YORUBA_DEGENERATE)  # combining dot below as its own code point
    assert decomposed != YORUBA_DEGENERATE and repetition_coverage(decomposed) == repetition_coverage(
        YORUBA_DEGENERATE)
    assert is_degenerate("the answer is 3 " * 10)  # a repeated 4-gram
    assert not is_degenerate("7 + 7 = 14. 14 + 1 = 15.\nAnswer: 15")  # a healthy worked sum
    assert is_degenerate("好" * 30) and not is_degenerate("我们今天去公园散步然后回家吃饭")  # unspaced scripts
    assert not is_degenerate("ṣe ṣe ṣe")  # too short to call
    assert is_degenerate("\n" * 40) and is_degenerate("." * 30)  # whitespace / punctuation only
    from implicit_reasoning.objectives.star import _tokens

    assert _tokens("Ẹ̀yà ọ̀rọ̀ kọ́") == ["ẹ̀yà", "ọ̀rọ̀", "kọ́"]  # no precomposed ẹ̀: the marks stay in the word
    assert degeneration_rate([YORUBA_DEGENERATE, YORUBA_HEALTHY]) == 0.5 and degeneration_rate([]) == 0.0


def _trl_dpo(policy_token_logps, completion_mask, ref_chosen, ref_rejected, beta, loss_types=("sigmoid",),
             loss_weights=(1.0,)):
    """TRL's own DPOTrainer._compute_loss (sigmoid loss, or a mix) on given per-token log-probs, through a stub."""
    from accelerate import Accelerator
    from trl import DPOTrainer

    trainer = object.__new__(DPOTrainer)
    batch = policy_token_logps.shape[0]
    trainer.model = SimpleNamespace(training=True)
    trainer.accelerator = Accelerator(cpu=True)
    trainer.aux_loss_enabled, trainer.ld_alpha, trainer.precompute_ref_logps = False, None, True
    trainer.f_divergence_type, trainer.loss_types, trainer.loss_weights = "reverse_kl", list(loss_types), list(
        loss_weights)
    trainer.beta, trainer.use_weighting, trainer._tp_size, trainer._total_train_tokens = beta, False, 1, 0
    trainer._metrics = {"train": defaultdict(list)}
    zeros = torch.zeros_like(policy_token_logps)
    outputs = SimpleNamespace(log_probs=policy_token_logps, entropy=zeros, mean_logits=zeros,
                              is_top1=zeros.bool())
    inputs = {"input_ids": torch.ones(batch, completion_mask.shape[1], dtype=torch.long),
              "attention_mask": torch.ones_like(completion_mask), "completion_mask": completion_mask,
              "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
    loss = DPOTrainer._compute_loss(trainer, lambda **kwargs: outputs, inputs, return_outputs=False)
    return loss, {k: v[-1] for k, v in trainer._metrics["train"].items()}


def test_dpo_loss_rewards_and_margins_match_trls_own_implementation():
    torch.manual_seed(0)
    pairs, width = 3, 6
    completion_mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 0]] * 2)
    token_logps = -torch.rand(2 * pairs, width - 1) * 3  # log-probs of tokens 1..5, chosen rows first
    token_logps = token_logps * completion_mask[:, 1:]  # TRL sums the fused head's masked log-probs
    ref = -torch.rand(2 * pairs) * 8
    trl_loss, trl_metrics = _trl_dpo(token_logps, completion_mask, ref[:pairs], ref[pairs:], beta=0.3)
    sums = token_logps.sum(dim=1)
    ours = dpo_loss(sums[:pairs], sums[pairs:], ref[:pairs], ref[pairs:], beta=0.3)
    assert ours["loss"].item() == pytest.approx(trl_loss.item(), abs=1e-6)
    for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert ours[name].item() == pytest.approx(trl_metrics[name], abs=1e-6), name


def test_rpo_alpha_adds_exactly_the_length_normalised_nll_of_the_chosen():
    chosen, rejected = torch.tensor([-4.0, -9.0], requires_grad=True), torch.tensor([-6.0, -5.0])
    ref_chosen, ref_rejected = torch.tensor([-5.0, -8.0]), torch.tensor([-5.5, -6.0])
    nll = torch.tensor([4.0 / 2, 9.0 / 3])  # per pair: -sum log p / number of chosen tokens
    plain = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5)
    with_nll = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5, chosen_nll=nll, rpo_alpha=0.7)
    expected = -F.logsigmoid(0.5 * torch.tensor([(1.0) - (-0.5), (-1.0) - (1.0)])).mean()
    assert plain["loss"].item() == pytest.approx(expected.item(), abs=1e-6)
    assert with_nll["loss"].item() == pytest.approx(expected.item() + 0.7 * 2.5, abs=1e-6)
    assert with_nll["nll_loss"].item() == pytest.approx(2.5) and with_nll["dpo_loss"] == plain["dpo_loss"]
    with pytest.raises(ValueError, match="needs chosen_nll"):
        dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5, rpo_alpha=0.1)


@pytest.mark.parametrize("text, degenerate", [
    ("的的的的的的的的的的，的的的…。", True),  # issue 18: punctuation must not hide the repetition
    ("的的的的，的的的的。的的的的！的的的的", True),
    ("我们我们我们我们，我们我们我们。", True),
    ("はいはいはいはい、はいはいはいはい。はいはい", True),
    ("ครับครับครับครับ ครับครับครับครับ", True),  # Thai: its vowel marks stay with their consonant
    ("我们今天去公园散步，然后回家吃饭。明天再去学校上课。", False),
    ("我有3个苹果和5个橘子，一共8个水果。", False),
    ("今日は晴れです。明日も晴れるでしょう。", False),
    ("สวัสดีครับ ผมชื่อสมชาย ยินดีที่ได้รู้จักครับ", False),
    ("7 + 5 = 12。答案：12", False),
])
def test_degeneration_counts_characters_of_unspaced_scripts_across_punctuation(text, degenerate):
    assert is_degenerate(text) is degenerate


def test_unspaced_scripts_are_split_into_characters_and_spaced_ones_into_words():
    from implicit_reasoning.objectives.star import _tokens

    assert _tokens("我有3个，苹果。") == ["我", "有", "3", "个", "苹", "果"]
    assert _tokens("ครับ") == ["ค", "รั", "บ"]  # the mark (U+0E31) stays with its consonant
    assert _tokens("Ìdáhùn: C，好的") == ["ìdáhùn", "c", "好", "的"]


def test_rpo_token_mean_is_trls_sigmoid_plus_sft_loss():
    """TRL 1.16's RPO is loss_type=["sigmoid", "sft"] with weights [1, alpha]: its sft term is one token mean over the
    batch's chosen tokens. rpo_token_mean=True passes that as chosen_nll (the trainer: sums / the update's count)."""
    torch.manual_seed(1)
    pairs, width = 3, 7
    completion_mask = torch.tensor([[0, 0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0]] * 2)
    token_logps = (-torch.rand(2 * pairs, width - 1) * 3) * completion_mask[:, 1:]
    ref = -torch.rand(2 * pairs) * 8
    trl_loss, _ = _trl_dpo(token_logps, completion_mask, ref[:pairs], ref[pairs:], beta=0.2,
                           loss_types=("sigmoid", "sft"), loss_weights=(1.0, 0.6))
    sums = token_logps.sum(dim=1)
    chosen = completion_mask[:pairs, 1:].bool()
    token_mean = -token_logps[:pairs][chosen].sum() / chosen.sum()
    per_rationale = -(token_logps[:pairs] * chosen).sum(1) / chosen.sum(1)
    ours = dpo_loss(sums[:pairs], sums[pairs:], ref[:pairs], ref[pairs:], 0.2, token_mean, rpo_alpha=0.6)
    paper = dpo_loss(sums[:pairs], sums[pairs:], ref[:pairs], ref[pairs:], 0.2, per_rationale, rpo_alpha=0.6)
    assert ours["loss"].item() == pytest.approx(trl_loss.item(), abs=1e-6)
    assert abs(paper["loss"].item() - trl_loss.item()) > 1e-3  # the two conventions differ on unequal lengths
