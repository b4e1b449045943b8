"""The multiple-choice checker: which option letter (A-E) a completion states, in any script.

The text is NFKC-normalised first (precomposed diacritics, full-width letters and punctuation
become "Ì", "C", "(", ":"). Then, in this order:

1. answer statements: an answer word ("answer", "option", "choice", and "answer" in the
   MMMLU languages: "Ìdáhùn", "Réponse", "答案", "정답", ...), then, within the same sentence,
   a colon or a copula ("is", "est", "ni", "是", "은", ...), up to two words ("option",
   "probably"; never a negation such as "not", "neither", "kì"), and the letter: "C", "(C)",
   "[C]", "**C**", or a lower-case "c" that ends its clause ("Answer: c", "Ìdáhùn: c.").
   "The answer is not A, it is C." states C; "The answer is probably not A." states nothing.
2. "<word>: X" on the last line in any other script ("Ответ: B", "መልስ: C"), when the letter
   ends its clause ("Note: A lot ..." is no answer).
   Of 1 and 2 the statement that starts last wins.
3. else a letter on a last line of its own ("(B)", "**D**");
4. else the last "(X)", then the last "X)", each unless a negation comes right before it.

A bare letter inside prose ("Oranges are rich in vitamin C.") is never an answer.
"""

from __future__ import annotations

import re
import unicodedata



def _N(words: list[str]) -> str:
    """Alternatives of a regex, in the NFKC form the text is matched in."""
    return "|".join(unicodedata.normalize("NFKC", w) for w in words)


_LETTER = r"[^\W\d_]"  # a letter of any script
_UNSPACED = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"  # kana, CJK ideographs, Hangul

# words that introduce the answer; spaced-script ones must stand as words (no letter right before or after)
_SPACED_ANSWER_WORDS = _N(["answer", "option", "choice", "réponse", "respuesta", "resposta", "risposta", "antwort",
                           "jawaban(?:nya)?", "jibu", "ìdáhùn", "ответ", "उत्तर", "উত্তর", "الإجابة", "الجواب"])
_UNSPACED_ANSWER_WORDS = _N(["答案", "答え", "解答", "回答", "정답", "답"])
_COPULAS = _N(["is", "was", "be", "are", "est", "sera", "es", "sería", "é", "seria", "è", "sarebbe", "ist", "lautet",
               "wäre", "adalah", "ialah", "yaitu", "ni", "jẹ́", "это", "है", "হল", "হলো", "هي", "هو"])
_UNSPACED_COPULAS = _N(["是", "为", "為", "は", "が", "은", "는", "이"])
_NEGATIONS = _N(["not", "cannot", "n't", "no", "neither", "nor", "never", "nicht", "kein", "keine", "pas", "non", "não",
                 "kì", "kò", "kìí", "sio", "si", "bukan", "tidak", "не", "नहीं", "না", "ليس"])
_UNSPACED_NEGATIONS = _N(["不", "没", "非", "아니"])

_ALONE = rf"(?<!{_LETTER})(?:{{}})(?!{_LETTER})"  # a spaced-script word standing alone
_ANSWER_WORD = rf"(?i:{_ALONE.format(_SPACED_ANSWER_WORDS)}|{_UNSPACED_ANSWER_WORDS})"
_LEAD = rf"(?i:{_ALONE.format(_COPULAS)}|{_UNSPACED_COPULAS}|[:=])"
_NEGATION = rf"(?i:{_ALONE.format(_NEGATIONS)}|{_UNSPACED_NEGATIONS})"
_FILLER = rf"(?:(?!{_NEGATION})(?:{_LETTER}{{1,20}}[ \t]+|[{_UNSPACED}]{{1,6}}))"  # "option ", "probably ", "选项"
_CLAUSE_END = r"(?=[ \t]*(?:[.,;!?)\]}。、\n]|$))"


def _slot(strict: bool) -> str:
    """The letter: bracketed or bold in any case, upper-case standing alone (ending its clause when `strict`), or
    lower-case ending its clause."""
    upper_end = _CLAUSE_END if strict else ""
    return (r"(?<![A-Za-z0-9])(?:[(\[{][ \t]*(?P<a>[A-Ea-e])[ \t]*[)\]}]"
            r"|(?P<star>\*{1,2}|_{1,2})(?P<b>[A-Ea-e])(?P=star)"
            rf"|(?P<c>[A-E])(?![A-Za-z0-9]){upper_end}|(?P<d>[a-e]){_CLAUSE_END})")


# bounded lengths (GAP characters from the answer word to its lead, short fillers and words): linear work on long
# degenerate texts
GAP = 60
_STATEMENT_RE = re.compile(rf"{_ANSWER_WORD}[^.!?。\n]{{0,{GAP}}}?{_LEAD}[ \t*_]*\n?[ \t*_]*{_FILLER}{{0,2}}?"
                           + _slot(False))
_WORD_COLON_RE = re.compile(rf"(?<!{_LETTER}){_LETTER}{{1,40}}[ \t]*:[ \t*_]*{_slot(True)}")
_OWN_LINE_RE = re.compile(rf"^[ \t#>*_-]*{_slot(False)}[ \t*_.!]*$")
_NEGATED_BEFORE = re.compile(rf"{_NEGATION}[ \t]*(?:be[ \t]*)?$")
_FALLBACKS = (re.compile(r"\(([A-E])\)"), re.compile(r"(?:^|\s)([A-E])\)"))


def _letter(match: re.Match) -> str:
    return next(match.group(k) for k in "abcd" if match.group(k)).upper()


def extract_choice(completion: str) -> str | None:
    """The option letter the completion states (see the module docstring), or None."""
    text = unicodedata.normalize("NFKC", completion).strip()
    candidates = [(m.start(), _letter(m)) for m in _STATEMENT_RE.finditer(text)]
    last_line = text[text.rfind("\n") + 1 :]
    candidates += [(len(text) - len(last_line) + m.start(), _letter(m)) for m in _WORD_COLON_RE.finditer(last_line)]
    if candidates:
        return max(candidates)[1]
    own = _OWN_LINE_RE.match(last_line)
    if own:
        return _letter(own)
    for pattern in _FALLBACKS:
        found = [m.group(1) for m in pattern.finditer(text)
                 if not _NEGATED_BEFORE.search(text[max(0, m.start() - 20) : m.start()])]
        if found:
            return found[-1]
    return None


def stated_choice(completion: str) -> str | None:
    """The option letter of the last answer statement (step 1 of the module docstring), or None: how a completion cut
    off by the token budget is read, since what it was writing when stopped is no answer."""
    found = list(_STATEMENT_RE.finditer(unicodedata.normalize("NFKC", completion)))
    return _letter(found[-1]) if found else None
