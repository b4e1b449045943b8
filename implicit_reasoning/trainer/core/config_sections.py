"""The sections of a config's fields, read from the config classes' docstrings ("Parameters that control ...:").

Each config class lists its fields under headed sections, TRL-style::

    Parameters that control the rationale:
        cot_trigger, response_length, stop_token

`config_sections(LatroConfig)` gathers them over the class and its bases, the trainer's own
class first, so `--help --trainer NAME` can show the trainer's fields grouped and before
transformers' own (`pipeline.training_parser`), and a test can check that the docstrings name
every field.
"""

from __future__ import annotations

import re
from dataclasses import fields

_TITLE = re.compile(r"^(\s*)(Parameters\b[^\n]*):\s*$")


def docstring_sections(cls) -> list[tuple[str, list[str]]]:
    """(title, field names) of the "Parameters ...:" blocks of `cls`'s own docstring."""
    sections, current, indent = [], None, 0
    for line in (cls.__dict__.get("__doc__") or "").splitlines():
        match = _TITLE.match(line)
        if match:
            current, indent = (match.group(2), []), len(match.group(1))
            sections.append(current)
        elif current is not None and line.strip() and len(line) - len(line.lstrip()) > indent:
            current[1].extend(name.strip() for name in line.split(",") if name.strip())
        else:
            current = None
    return sections


def config_sections(config_cls) -> list[tuple[str, list[str]]]:
    """Sections of `config_cls`'s fields over its class hierarchy (the most derived class first; a field
    listed twice stays in its first section; names that are not fields are dropped)."""
    names = {f.name for f in fields(config_cls)}
    out, seen = [], set()
    for cls in config_cls.__mro__:
        if not cls.__module__.startswith("implicit_reasoning."):
            continue
        for title, listed in docstring_sections(cls):
            kept = [name for name in listed if name in names and name not in seen]
            seen.update(kept)
            if kept:
                out.append((title, kept))
    return out
