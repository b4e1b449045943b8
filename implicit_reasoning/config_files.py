"""The shipped configs (accelerate YAMLs, DeepSpeed JSONs, training YAMLs) by NAME.

The repository's `configs/` is the single source. `setup.py` maps it into the package as
`implicit_reasoning/configs/`, so an installed wheel carries the files; a source checkout
(editable install) reads `configs/` beside the package. `resolve_config` turns `8gpu`,
`8gpu.yaml` or `configs/8gpu.yaml` into the shipped file when no such path exists from the
current directory; a path that exists is always used as given.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    """Where the shipped configs are: inside the installed package, else the source checkout's `configs/`."""
    packaged = PACKAGE_DIR / "configs"
    checkout = PACKAGE_DIR.parent / "configs"
    if not packaged.is_dir() and (PACKAGE_DIR.parent / "setup.py").is_file() and checkout.is_dir():
        return checkout
    return packaged


def shipped_configs() -> dict[str, Path]:
    """File name -> path of every shipped config (`8gpu.yaml`, `ds_zero3.json`, `demo_latro.yaml`, ...)."""
    directory = config_dir()
    if not directory.is_dir():
        return {}
    return {p.name: p for p in sorted(directory.iterdir()) if p.suffix in CONFIG_SUFFIXES and p.is_file()}


def shipped_config(value: str) -> Path | None:
    """The shipped config that `value` names (`NAME`, `NAME.yaml` or `configs/NAME.yaml`), else None."""
    parts = Path(value).parts
    if len(parts) == 2 and parts[0] == "configs":
        value = parts[1]
    elif len(parts) != 1:
        return None
    files = shipped_configs()
    for candidate in (value, *(value + suffix for suffix in CONFIG_SUFFIXES)):
        if candidate in files:
            return files[candidate]
    return None


def resolve_config(value: str, flag: str = "config") -> str:
    """`value` itself if that path exists, else the shipped config it names; a clear error otherwise."""
    if os.path.exists(value):
        return value
    found = shipped_config(value)
    if found is not None:
        return str(found)
    names = ", ".join(Path(name).stem for name in shipped_configs()) or "none found"
    raise FileNotFoundError(f"{flag} {value!r}: no such file, and no shipped config of that name (shipped: {names})")


def deepspeed_file_flag(accelerate_config: str) -> list[str]:
    """`--deepspeed_config_file ABS` for `accelerate launch` when `accelerate_config` names a DeepSpeed JSON
    by a relative path that does not exist from here but is a shipped file (a shipped accelerate config
    run outside the repository); [] otherwise. A flag given to `accelerate launch` wins over the file's key."""
    import yaml

    with open(accelerate_config) as f:
        data = yaml.safe_load(f) or {}
    path = (data.get("deepspeed_config") or {}).get("deepspeed_config_file") if isinstance(data, dict) else None
    if not path or os.path.isabs(path) or os.path.exists(path):
        return []
    found = shipped_config(path)
    return ["--deepspeed_config_file", str(found)] if found is not None else []
