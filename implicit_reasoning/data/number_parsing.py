"""The numbers in a text, canonical: what the numeric answer checker compares (and what a gold answer must hold).

Commas between thousands, "$" and the minus sign U+2212 are removed first; "(-5)" is -5; a "-"
glued to a preceding word or digit is an operator, not a sign. Digits of any script count
(Python's \\d: "٧" is 7).
"""

from __future__ import annotations

import re

_THOUSANDS_COMMA_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# "(-5)" | "-5" / "5" / "3.25"
_NUMBER_RE = re.compile(r"\(\s*-\s*(\d+(?:\.\d+)?)\s*\)|(?<![\w.])(-?)(\d+(?:\.\d+)?)")


def canonical_number(sign: str, digits: str) -> str:
    """'007.50' -> '7.5', '-0' -> '0'."""
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    digits = digits.lstrip("0") or "0"
    digits = "0" + digits if digits.startswith(".") else digits
    return digits if digits == "0" else sign + digits


def numbers_in(text: str) -> list[str]:
    """Every number of `text`, in order, canonical."""
    text = _THOUSANDS_COMMA_RE.sub("", text.replace("$", "").replace("\u2212", "-"))
    out = []
    for match in _NUMBER_RE.finditer(text):
        if match.group(1) is not None:
            out.append(canonical_number("-", match.group(1)))
        else:
            out.append(canonical_number(match.group(2), match.group(3)))
    return out
