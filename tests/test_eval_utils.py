"""Tests for answer extraction and checking (implicit_reasoning.evaluation.checkers)."""

from pathlib import Path

import pytest

from implicit_reasoning.evaluation import checkers as eu

CUSTOM = str(Path(__file__).parent / "fixtures" / "custom" / "train.jsonl")


# --------------------------------------------------------------------------- checker lookup


def test_checker_for_registry_and_paths():
    assert eu.checker_for("gsm8k") == "numeric"
    assert eu.checker_for("arithmetic_negative") == "numeric"
    assert eu.checker_for("math") == "math"
    assert eu.checker_for("arc_challenge") == eu.checker_for("mmlu") == eu.checker_for("mmmlu") == "multiple_choice"
    assert eu.checker_for(CUSTOM) == "numeric"
    assert eu.checker_for("some/dir/not_there.jsonl") == "numeric"


def test_checker_for_unknown_name_is_error():
    with pytest.raises(ValueError, match="gsm9k"):
        eu.checker_for("gsm9k")


def test_raw_text_dataset_has_no_checker():
    with pytest.raises(ValueError, match="no answer checker"):
        eu.extract_answer("wikitext", "The answer is 3.")


# --------------------------------------------------------------------------- numeric


@pytest.mark.parametrize("completion, expected", [
    ("48 + 12 = 60. The answer is 60.", "60"),
    ("The answer is $1,234.", "1234"),
    ("So she pays $1,250,000 in total. The answer is 1,250,000", "1250000"),
    ("The answer is 5. Wait, I made a mistake. The answer is 7.", "7"),
    ("THE ANSWER IS 12 apples and 3 pears.", "12"),
    ("3 + (-8) = (-5). The answer is (-5).", "-5"),
    ("The answer is -5.", "-5"),
    ("Total is 10 - 3 = 7", "7"),
    ("the price is 2.50 dollars. The answer is 2.50.", "2.5"),
    ("I computed 12 and then 47.", "47"),
    ("The answer is 0.", "0"),
    ("We got 9 earlier. The answer is unknown.", "9"),
    ("Answer: 42", "42"),
    ("There is no number here.", None),
    ("", None),
])
def test_extract_numeric(completion, expected):
    assert eu.extract_answer("gsm8k", completion) == expected


@pytest.mark.parametrize("completion, gold, ok", [
    ("The answer is 1,285.", "1285", True),
    ("The answer is $18.00", "18", True),
    ("The answer is 18.0000001.", "18", True),
    ("The answer is 18.01.", "18", False),
    ("The answer is 5 then 6. The answer is 6.", "6", True),
    ("The answer is 5 then 6. The answer is 6.", "5", False),
    ("(-13) + (-65) = (-78). The answer is (-78).", "-78", True),
    ("The answer is 78.", "-78", False),
    ("no answer", "3", False),
    ("The answer is 4.", "1,000", False),
])
def test_is_correct_numeric(completion, gold, ok):
    assert eu.is_correct("gsm8k", completion, gold) is ok


def test_numeric_for_custom_and_arithmetic():
    assert eu.is_correct(CUSTOM, "3 - 8 gives -5. The answer is -5.", "-5")
    assert eu.is_correct("arithmetic_negative", "62 + (-75) = (-13). The answer is (-13).", "-13")
    assert not eu.is_correct("arithmetic", "The answer is 14.", "41")


# --------------------------------------------------------------------------- math


@pytest.mark.parametrize("completion, expected", [
    ("So $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("First \\boxed{3}, then correcting: \\boxed{\\sqrt{2}}", "\\sqrt{2}"),
    ("The answer is $\\frac{3}{4}$.\nDone.", "\\frac{3}{4}"),
    ("The answer is 12.", "12"),
    ("I cannot finish this.", None),
])
def test_extract_math(completion, expected):
    assert eu.extract_answer("math", completion) == expected


@pytest.mark.parametrize("completion, gold, ok", [
    ("$\\boxed{\\dfrac{1}{2}}$", "\\frac{1}{2}", True),
    ("$\\boxed{0.5}$", "\\frac{1}{2}", True),
    ("\\boxed{\\left( -\\infty, 2 \\right]}", "(-\\infty, 2]", True),
    ("\\boxed{ x^2 + 1 }", "1 + x^2", True),
    ("\\boxed{\\frac{1}{3}}", "\\frac{1}{2}", False),
    ("The answer is $5$.", "5", True),
    ("no boxed answer", "5", False),
])
def test_is_correct_math(completion, gold, ok):
    assert eu.is_correct("math", completion, gold) is ok


def test_normalize_math_without_math_verify(monkeypatch):
    monkeypatch.setattr(eu, "_mv_parse", None)
    assert eu.is_correct("math", "\\boxed{\\dfrac{1}{2}\\!}.", "\\frac{1}{2}")
    assert not eu.is_correct("math", "\\boxed{0.5}", "\\frac{1}{2}")  # needs math-verify


# --------------------------------------------------------------------------- multiple choice


@pytest.mark.parametrize("completion, expected", [
    ("Metals conduct heat well. The answer is C.", "C"),
    ("The answer is (B) Mars.", "B"),
    ("Answer: D", "D"),
    ("I think the answer is: **A**", "A"),
    ("Options (A) and (C) both seem possible, but (C) fits best.", "C"),
    ("A) is wrong, B) is right", "B"),
    ("The answer is A. Actually, the answer is E.", "E"),
    ("Carbon dioxide is absorbed.", None),
])
def test_extract_choice(completion, expected):
    assert eu.extract_answer("arc_challenge", completion) == expected


def test_is_correct_multiple_choice():
    assert eu.is_correct("mmlu", "The answer is (b).".upper(), "B")
    assert eu.is_correct("mmmlu", "Answer: c", "C")  # a lower-case letter ending the answer statement (issue 18)
    assert eu.is_correct("arc_challenge", "The answer is C.", "c")
    assert not eu.is_correct("arc_challenge", "The answer is A.", "C")
    assert not eu.is_correct("mmlu", "I do not know.", "A")


# --------------------------------------------------------------------------- majority vote


@pytest.mark.parametrize("answers, expected", [
    (["3", "4", "4", None, "3", "4"], "4"),
    (["7", "5", "5", "7"], "7"),  # tie -> earliest seen
    ([None, "5", "7", "7", "5"], "5"),
    ([None, None], None),
    ([], None),
])
def test_majority_vote(answers, expected):
    assert eu.majority_vote(answers) == expected


def test_majority_vote_over_extracted_numbers():
    completions = ["The answer is 1,000.", "The answer is 1000.00", "The answer is 999."]
    assert eu.majority_vote([eu.extract_answer("gsm8k", c) for c in completions]) == "1000"


@pytest.mark.parametrize("completion, letter", [
    ("Ìdáhùn: C", "C"),                                      # Yoruba "Answer:", diacritics and all
    ("Ẹ̀yà A kò tọ̀nà nítorí...\nÌdáhùn: (B)", "B"),          # a letter mentioned earlier does not win
    ("Option (A) est fausse.\nRéponse : D", "D"),
    ("ṣe ṣe ṣe\nB", "B"),                                    # a letter on a line of its own
    ("Mo rò pé ìdáhùn tó tọ̀nà ni B.", "B"),
    ("The answer is C. Ìdáhùn: A", "A"),                     # the last answer statement wins
    ("The answer is probably not A.\nÌdáhùn: C", "C"),
    ("The answer is C.\nNote: A lot depends on the units.", "C"),  # "Note: A lot" is not an answer line
])
def test_multiple_choice_letters_in_any_script(completion, letter):
    assert eu.extract_choice(completion) == letter
    assert eu.is_correct("mmmlu", completion, letter)


@pytest.mark.parametrize("completion, expected", [
    ("The original answer is 1, after the correction it is 12.", "12"),  # "answer is" inside a phrase: no marker
    ("Her previous answer is 3, but 4 + 5 = 9.", "9"),
    ("The final answer is 5.", "5"),
    ("The correct answer is 6, not 8.", "6"),
    ("My answer is 4 apples.", "4"),
    ("3 + 4 = 7.\nAnswer is 7, then 9 more.", "7"),  # at the start of a line
    ("So the answer is 8 and 9 is wrong.", "8"),
])
def test_the_numeric_marker_is_an_answer_statement_not_any_answer_is(completion, expected):
    assert eu.extract_answer("gsm8k", completion) == expected


def test_a_cut_off_completion_is_read_only_from_an_answer_statement():
    assert eu.extract_answer("gsm8k", "3 + 4 = 7 and then", cut_off=True) is None
    assert eu.extract_answer("gsm8k", "The answer is 7. Also 3 + 5 = 8", cut_off=True) == "7"
    assert eu.is_correct("gsm8k", "3 + 4 = 7", "7") and not eu.is_correct("gsm8k", "3 + 4 = 7", "7", cut_off=True)
    assert eu.extract_answer("mmlu", "Options (A) and (B) look", cut_off=True) is None
    assert eu.extract_answer("mmlu", "The answer is (B). Because (A)", cut_off=True) == "B"
    assert eu.extract_answer("math", "so $\\boxed{4}$ and then", cut_off=True) == "4"
