"""The multiple-choice checker (arc_challenge, mmlu, mmmlu) on what a person reads at once, in several scripts.

Under STaR a false positive is trained on as a correct rationale, and under DPO a missed correct answer
becomes a rejected sample: both matter. `None` means "no answer given".
"""

import unicodedata

import pytest

from implicit_reasoning.evaluation import checkers as eu

CASES = [
    # --- English
    ("Answer: c", "C"),  # issue 18
    ("The answer is (b).", "B"),  # issue 18
    ("The answer is not A, it is C.", "C"),  # issue 18: was A
    ("Oranges are rich in vitamin C.", None),  # issue 18: a bare letter in prose is no answer
    ("Metals conduct heat well. The answer is C.", "C"),
    ("The answer is (B) Mars.", "B"),
    ("I think the answer is: **A**", "A"),
    ("**Answer:** B", "B"),
    ("Answer: [D]", "D"),
    ("Final answer: e.", "E"),
    ("The answer is\nD", "D"),
    ("Answer: C because the other options are too small.", "C"),
    ("The correct answer is option B, since it is larger.", "B"),
    ("The answer is A. Actually, the answer is E.", "E"),
    ("The answer is B or C.", "B"),  # the first letter of the statement
    ("The answer is C.\nNote: A lot depends on the units.", "C"),
    ("The answer is a bit unclear.", None),  # the article a, not option A
    ("The answer is probably not A.", None),
    ("The answer is neither A nor B.", None),
    ("The answer depends on vitamin C.", None),
    ("Plan A failed, so we tried plan B.", None),
    ("Note: A lot depends on the units.", None),
    ("Step 1: A is larger than B.\nStep 2: so B is smaller.", None),
    ("Carbon dioxide is absorbed.", None),
    ("The answer is 3.", None),
    ("Options (A) and (C) both seem possible, but (C) fits best.", "C"),
    ("A) is wrong, B) is right", "B"),
    ("It cannot be (A).", None),
    ("Reasoning first.\n(B)", "B"),
    ("Reasoning first.\n**D**", "D"),
    ("E", "E"),
    # --- Yoruba (MMMLU YO_NG), diacritics precomposed or not
    ("Ìdáhùn: c.", "C"),  # issue 18
    ("Ìdáhùn: **C**", "C"),  # issue 18
    ("Ìdáhùn: C,", "C"),  # issue 18
    ("Ìdáhùn: C;", "C"),  # issue 18
    ("Ìdáhùn: [C]", "C"),  # issue 18
    ("Ìdáhùn: C. Ìlú Paris", "C"),  # issue 18
    ("Ìdáhùn: C\nÌparí.", "C"),  # issue 18
    ("Ìdáhùn: C", "C"),
    (unicodedata.normalize("NFD", "Ìdáhùn: D"), "D"),
    ("Ẹ̀yà A kò tọ̀nà nítorí...\nÌdáhùn: (B)", "B"),
    ("Mo rò pé ìdáhùn tó tọ̀nà ni B.", "B"),
    ("Ìdáhùn kì í ṣe A, ó jẹ́ D.", "D"),
    ("The answer is C. Ìdáhùn: A", "A"),  # the last answer statement wins
    ("The answer is probably not A.\nÌdáhùn: C", "C"),
    ("Ọsàn ní fítámì C.", None),  # "oranges have vitamin C"
    ("ṣe ṣe ṣe B", None),  # a letter ending degenerate prose is no answer statement
    ("ṣe ṣe ṣe\nB", "B"),  # ... a letter on a line of its own is
    # --- other Latin-script languages
    ("Option (A) est fausse.\nRéponse : D", "D"),
    ("La réponse est B.", "B"),
    ("La respuesta es B.", "B"),
    ("Die Antwort ist C.", "C"),
    ("A resposta correta é (d).", "D"),
    ("La risposta è E", "E"),
    ("Jawabannya adalah C.", "C"),
    ("Jibu ni A.", "A"),
    # --- CJK (full-width forms included)
    ("答案是C。", "C"),
    ("答案：B", "B"),
    ("所以答案是选项D。", "D"),
    ("答えは（Ｄ）です。", "D"),
    ("정답은 A입니다.", "A"),
    ("정답: E", "E"),
    ("维生素C很重要。", None),
    # --- other scripts
    ("الإجابة: B", "B"),
    ("उत्तर: C", "C"),
    ("উত্তর: D", "D"),
    ("Ответ: B", "B"),
    ("መልስ: C", "C"),  # Amharic: "<word>: X" on the last line, a language not listed
]


@pytest.mark.parametrize("completion, letter", CASES)
def test_multiple_choice_checker_table(completion, letter):
    assert eu.extract_answer("mmmlu", completion) == letter
    if letter is not None:
        assert eu.is_correct("mmmlu", completion, letter) and eu.is_correct("arc_challenge", completion, letter.lower())
        wrong = "A" if letter != "A" else "B"
        assert not eu.is_correct("mmlu", completion, wrong)
    else:
        assert not any(eu.is_correct("mmlu", completion, option) for option in "ABCDE")


def test_the_table_covers_several_scripts():
    assert len(CASES) >= 40
    scripts = {unicodedata.name(c).split()[0] for text, _ in CASES for c in text if c.isalpha() and ord(c) > 0x24F}
    assert {"CJK", "HIRAGANA", "HANGUL", "ARABIC", "DEVANAGARI", "BENGALI", "CYRILLIC", "ETHIOPIC"} <= scripts
