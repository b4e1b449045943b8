"""Every config field has a reader in the package and a line (with its default) on its docs page.

A field that nothing reads is a setting that silently has no effect; a field missing from the
docs is one a user cannot find.
"""

import ast
import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from transformers import TrainingArguments

from implicit_reasoning.trainer import TRAINERS, ReasoningPromptFields, RolloutConfig, TrainerConfig
from implicit_reasoning.trainer.core.base_config import SamplingFields
from implicit_reasoning.trainer.trainer_config import CurriculumFields, GroupRolloutConfig

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "implicit_reasoning"
DOCS = ROOT / "docs"
HF_FIELDS = {f.name: f for f in fields(TrainingArguments)}
SHARED_CLASSES = (TrainerConfig, RolloutConfig, GroupRolloutConfig, ReasoningPromptFields, SamplingFields,
                  CurriculumFields)
# fields whose effect is to set TrainingArguments fields in __post_init__ (each has its own test)
TRANSLATED = {"num_evaluations", "checkpoint_path"}


def _reading_source() -> str:
    """Package source with what does not count as reading removed: field declarations and `validate()`."""
    texts = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                node.body = [
                    item for item in node.body
                    if not isinstance(item, ast.AnnAssign)
                    and not (isinstance(item, ast.FunctionDef) and item.name == "validate")
                ] or [ast.Pass()]
        texts.append(ast.unparse(tree))
    return "\n".join(texts)


SOURCE = _reading_source()


def _own_fields(config_cls):
    """Our fields, plus TrainingArguments fields whose default the class changes."""
    for f in fields(config_cls):
        if f.name not in HF_FIELDS:
            yield f
        elif _default(f) != _default(HF_FIELDS[f.name]):
            yield f


def _default(f):
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _config_classes():
    seen = {}
    for name, (_, config_cls) in TRAINERS.items():
        seen[config_cls.__name__] = config_cls
    return sorted(seen.values(), key=lambda c: c.__name__)


@pytest.mark.parametrize("config_cls", _config_classes(), ids=lambda c: c.__name__)
def test_every_field_is_read_somewhere(config_cls):
    unread = []
    for f in _own_fields(config_cls):
        if f.name in HF_FIELDS or f.name in TRANSLATED:
            continue  # Trainer reads its own fields; translated ones are tested where they are set
        if not re.search(rf"\.{f.name}\b|getattr\([^)]*['\"]{f.name}['\"]", SOURCE):
            unread.append(f.name)
    assert not unread, f"{config_cls.__name__}: fields nobody reads: {unread}"


def _doc_rows(page: Path) -> dict[str, str]:
    """`| `name` | default | ... |` table rows of a docs page: name -> default cell."""
    rows = {}
    for line in page.read_text().splitlines():
        match = re.match(r"\|\s*`([a-z_0-9]+)`\s*\|\s*([^|]*?)\s*\|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def _same_default(cell: str, value) -> bool:
    cell = cell.strip("`")
    try:
        return ast.literal_eval(cell) == value
    except (ValueError, SyntaxError):
        return cell == str(value)


def _page_for(config_cls, field_name: str) -> Path:
    """A shared field is documented once, in configuration.md; a method's own field on its trainer's page."""
    for shared in SHARED_CLASSES:
        if field_name in shared.__dataclass_fields__ and field_name not in config_cls.__dict__.get(
            "__annotations__", {}
        ):
            return DOCS / "configuration.md"
    name = next(n for n, (_, c) in TRAINERS.items() if c is config_cls)
    return DOCS / f"{name}.md"


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_every_field_is_on_its_docs_page_with_its_default(name):
    config_cls = TRAINERS[name][1]
    problems = []
    for f in _own_fields(config_cls):
        page = _page_for(config_cls, f.name)
        rows = _doc_rows(page)
        if f.name not in rows:
            problems.append(f"{f.name} missing from {page.name}")
        elif not _same_default(rows[f.name], _default(f)):
            problems.append(f"{f.name}: {page.name} says {rows[f.name]!r}, the default is {_default(f)!r}")
    assert not problems, problems


def test_every_trainer_has_a_page_that_links_the_shared_fields():
    for name in TRAINERS:
        page = (DOCS / f"{name}.md").read_text()
        assert "configuration.md" in page, name
