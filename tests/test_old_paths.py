"""The import paths before the layout move still load, for one release: each old module re-exports its new
module's public names (the same objects) with a FutureWarning naming the new path, and a config pickled under
its old class path (a saved run's `training_args.bin`) loads as the new class."""

import ast
import importlib
import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from test_layout import ROOT, _module_name, old_path_files

from implicit_reasoning.trainer import TRAINER_SPECS, config_class


def _new_modules(old_file: Path) -> list[str]:
    """The modules an old path re-exports: `from package import module` (the old path becomes that module) or
    `from module import (names)` (a module split in several: their public names)."""
    tree = ast.parse(old_file.read_text())
    aliased = any(isinstance(n, ast.Assign) and ast.unparse(n).startswith("sys.modules[") for n in tree.body)
    froms = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module != "__future__"]
    return [f"{n.module}.{n.names[0].name}" if aliased else n.module for n in froms]


def _public(module) -> set[str]:
    """The names a module defines (not imports) without a leading underscore, plus its `__all__`."""
    tree = ast.parse(Path(module.__file__).read_text())
    names = set(getattr(module, "__all__", ()))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name) and t.id != "__all__")
    return {n for n in names if not n.startswith("_")}


def _fresh_import(name: str):
    """Import `name` again (a test before may have imported it), recording its warnings."""
    sys.modules.pop(name, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(name)
    return module, [w for w in caught if issubclass(w.category, FutureWarning)]


@pytest.mark.parametrize("old_file", old_path_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_an_old_path_reexports_its_new_module_and_says_where_it_went(old_file):
    old, new = _module_name(old_file), _new_modules(old_file)
    module, future = _fresh_import(old)
    assert [str(w.message) for w in future] == [f"{old} moved to {', '.join(new)}; the old path goes in the next release"]
    targets = [importlib.import_module(name) for name in new]
    if len(targets) == 1:
        assert module is targets[0]  # every name, private ones and monkeypatching included
        return
    for target in targets:
        names = _public(target)
        assert names and names <= set(module.__all__)
        assert all(getattr(module, name) is getattr(target, name) for name in names)


# where each config class lived before the move: what `training_args.bin` of a run saved then names
OLD_CONFIG_MODULES = {name: f"implicit_reasoning.trainer.{name}_config" for name in TRAINER_SPECS}


def _saved_before_the_move(config, name: str) -> bytes:
    """`config` as `torch.save` wrote it before the move: pickle protocol 2 names the class as a
    "module\\nqualname\\n" text (GLOBAL), so the old module path can be written in place of the new one."""
    buffer = io.BytesIO()
    torch.save(config, buffer, _use_new_zipfile_serialization=False)
    new, old = type(config).__module__.encode() + b"\n", OLD_CONFIG_MODULES[name].encode() + b"\n"
    data = buffer.getvalue()
    assert data.count(new) == 1
    return data.replace(new, old)


@pytest.mark.parametrize("name", sorted(TRAINER_SPECS))
def test_a_config_pickled_under_its_old_path_loads_as_the_new_class(name, tmp_path):
    cls = config_class(name)
    config = cls(output_dir=str(tmp_path), seed=7, learning_rate=3e-5)
    data = _saved_before_the_move(config, name)
    sys.modules.pop(OLD_CONFIG_MODULES[name], None)  # as in a fresh process: unpickling imports the old path itself
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = torch.load(io.BytesIO(data), weights_only=False)
    assert type(loaded) is cls and loaded.to_dict() == config.to_dict()
    assert any(issubclass(w.category, FutureWarning) and cls.__module__ in str(w.message) for w in caught)


def test_a_saved_runs_training_args_from_before_the_move_loads_in_a_fresh_process(tmp_path):
    cls = config_class("latro")
    config = cls(output_dir=str(tmp_path), rloo_k=4, stop_seqs=["X"], seed=11)
    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    (checkpoint / "training_args.bin").write_bytes(_saved_before_the_move(config, "latro"))
    code = (
        "import json, sys, warnings, torch\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    args = torch.load(sys.argv[1], weights_only=False)\n"
        "print(json.dumps({'class': f'{type(args).__module__}.{type(args).__name__}', 'fields': args.to_json_string(),"
        " 'warnings': [str(w.message) for w in caught if w.category is FutureWarning]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(checkpoint / "training_args.bin")], capture_output=True,
                         text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["class"] == "implicit_reasoning.trainer.latro.config.LatroConfig"
    assert json.loads(result["fields"]) == json.loads(config.to_json_string())
    assert any("implicit_reasoning.trainer.latro_config moved to" in w for w in result["warnings"])
