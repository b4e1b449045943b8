"""`CurriculumFields`: a data mixture with difficulty-driven sampling weights, for any rollout trainer.

`datasets` lists the mixture. In YAML each entry is a mapping; on the command line a JSON
object or a compact "name" / "name:config" string::

    datasets:
      - {name: gsm8k}
      - {name: arc_challenge, weight: 2}
      - {name: wikitext, config: wikitext-103-raw-v1}
      - {name: my/hub-corpus, text_column: body}
      - {name: ./local_dir, text_column: text, path: null}

Entry keys: `name` (a registry name, a hub id or a local path), `config` (hub config /
generator params), `path` (local files with the hub schema, as `dataset_path`),
`text_column` (the raw-text column of a dataset the registry does not know, or to read
instead of the registry's), `weight` (initial sampling weight, default 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ...objectives.curriculum import CURRICULUM_RULES
from .base_config import check
from .docstrings import documented

ENTRY_KEYS = ("name", "config", "path", "text_column", "weight")


def normalize_entry(entry, position: int) -> dict:
    """One `datasets` entry as a dict with every key of ENTRY_KEYS (errors name the entry and key)."""
    if isinstance(entry, str):
        text = entry.strip()
        if text.startswith("{"):
            try:
                entry = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"datasets[{position}]: {text!r} is not valid JSON ({error})") from None
        else:
            name, _, config = text.partition(":")
            entry = {"name": name, "config": config or None}
    check(isinstance(entry, dict), f"datasets[{position}]: {entry!r} must be a mapping or a string")
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    check(not unknown, f"datasets[{position}]: unknown key(s) {unknown}; allowed: {list(ENTRY_KEYS)}")
    check(bool(entry.get("name")), f"datasets[{position}]: 'name' is required")
    out = {key: entry.get(key) for key in ENTRY_KEYS}
    out["weight"] = 1.0 if out["weight"] is None else float(out["weight"])
    check(out["weight"] >= 0, f"datasets[{position}] ({out['name']}): weight={out['weight']} must be >= 0")
    return out


def entry_label(entry: dict) -> str:
    """The name a dataset's weight is logged under: its name, plus its config when that is set."""
    return entry["name"] if not entry.get("config") else f"{entry['name']}:{entry['config']}"


@documented
@dataclass
class CurriculumFields:
    """Mixin: train on a mixture of datasets, sampled by weights a curriculum rule updates.

    List it before the TrainerConfig-derived base. Without `datasets` the run uses
    `dataset_name` alone and the curriculum is off.
    """

    value_types = {"datasets": list[str | dict] | None}  # field_checks: YAML / Python entries may be mappings

    datasets: list[str] | None = field(
        default=None,
        metadata={"help": "The mixture: entries {name, config, path, text_column, weight} (YAML mappings, or "
                          "JSON / 'name[:config]' strings on the CLI). None = dataset_name alone."},
    )
    curriculum_rule: str = field(
        default="learning_progress",
        metadata={"help": f"How weights follow difficulty: {' | '.join(CURRICULUM_RULES)}."},
    )
    curriculum_eta: float = field(default=0.1, metadata={"help": "Step size of the weight update."})
    curriculum_floor: float = field(
        default=0.05, metadata={"help": "No dataset's weight falls below this (<= 1 / number of datasets)."}
    )
    difficulty_sample_size: int = field(
        default=100, metadata={"help": "Examples per dataset (a fixed sample) on which difficulty is measured."}
    )
    difficulty_interval: int = field(
        default=50, metadata={"help": "Measure difficulty and update the weights every this many optimizer steps."}
    )
    freeze_interval: int = field(
        default=50,
        metadata={"help": "Refresh the frozen copy that measures difficulty every this many steps (a multiple of "
                          "difficulty_interval; equal = measure with the current weights, no copy kept)."},
    )

    @property
    def mixture(self) -> list[dict]:
        """The normalised `datasets` entries, or one entry for `dataset_name`."""
        if not self.datasets:
            return [normalize_entry({"name": self.dataset_name, "config": self.dataset_config,
                                     "path": self.dataset_path}, 0)]
        return [normalize_entry(entry, i) for i, entry in enumerate(self.datasets)]

    def validate(self) -> None:
        super().validate()
        mixture = self.mixture
        labels = [entry_label(e) for e in mixture]
        check(len(set(labels)) == len(labels), f"datasets: entries repeat a name/config: {labels}")
        check(sum(e["weight"] for e in mixture) > 0, "datasets: the initial weights sum to 0")
        check(self.curriculum_rule in CURRICULUM_RULES,
              f"curriculum_rule={self.curriculum_rule!r}: must be one of {CURRICULUM_RULES}")
        check(self.curriculum_eta >= 0, f"curriculum_eta={self.curriculum_eta}: must be >= 0")
        check(self.curriculum_rule != "learning_progress" or 0 < self.curriculum_eta <= 1,
              f"curriculum_eta={self.curriculum_eta}: must be in (0, 1] for curriculum_rule='learning_progress' "
              "(the step toward the progress-proportional target)")
        check(0 <= self.curriculum_floor <= 1 / len(mixture),
              f"curriculum_floor={self.curriculum_floor}: must be in [0, 1/{len(mixture)}] for {len(mixture)} datasets")
        for name in ("difficulty_sample_size", "difficulty_interval", "freeze_interval"):
            check(getattr(self, name) >= 1, f"{name}={getattr(self, name)}: must be >= 1")
        check(self.freeze_interval % self.difficulty_interval == 0,
              f"freeze_interval={self.freeze_interval} must be a multiple of difficulty_interval="
              f"{self.difficulty_interval} (the frozen copy is refreshed at a measurement)")
