"""The package's shape: packages named for what they hold, imports that only run downward, no cycle,
no oversized module, and old import paths that are thin re-exports nothing of ours uses."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "implicit_reasoning"
MAX_LINES = 450

# Lowest first. A module may import from a lower layer, or from its own unit (the longest prefix below that
# names it); never upward, never sideways into another unit of its layer (one method's trainer from another's).
LAYERS = [
    ("the package root", ["implicit_reasoning"]),  # `__version__` only
    ("data", ["implicit_reasoning.data"]),
    ("runtime", ["implicit_reasoning.runtime"]),
    ("generation", ["implicit_reasoning.generation"]),
    ("scoring", ["implicit_reasoning.scoring"]),
    ("evaluation", ["implicit_reasoning.evaluation"]),
    ("objectives", ["implicit_reasoning.objectives"]),
    ("trainer core", ["implicit_reasoning.trainer.core"]),
    ("one trainer per method", [f"implicit_reasoning.trainer.{method}"
                                for method in ("latro", "markovian", "star", "sft", "ppo_curriculum")]),
    ("the trainer registry", ["implicit_reasoning.trainer"]),  # lazy names, trainer_config, the old trainer paths
    ("shipped files and the tiny model", ["implicit_reasoning.config_files", "implicit_reasoning.gguf_convert",
                                          "implicit_reasoning.tiny"]),
    ("jobs", ["implicit_reasoning.pipeline", "implicit_reasoning.evaluate"]),
    ("analysis", ["implicit_reasoning.analysis"]),
    ("demo", ["implicit_reasoning.demo"]),
    ("command line", ["implicit_reasoning.cli"]),
    ("old import paths", ["implicit_reasoning.utils"]),
]
# modules kept only so that old import paths (and pickled configs) still load, for one release
KEPT_TRAINER_MODULES = {"__init__.py", "trainer_config.py"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Package modules imported anywhere in the file (module level or inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph = {name: _imports(path, modules) for name, path in files.items()}
    # importing a submodule runs its package's __init__ first; `a.b` importing `a` is not a cycle of its own
    return {name: {m for m in deps if not name.startswith(m + ".")} for name, deps in graph.items()}


def _unit(module: str) -> tuple[int, str] | None:
    """(layer index, unit) of a module: the longest unit prefix naming it (the root names only itself)."""
    best = None
    for index, (_, units) in enumerate(LAYERS):
        for unit in units:
            inside = module == unit or (unit != "implicit_reasoning" and module.startswith(unit + "."))
            if inside and (best is None or len(unit) > len(best[1])):
                best = (index, unit)
    return best


def _is_reexport(path: Path) -> bool:
    """Only a docstring, imports, `__all__` (or `sys.modules[__name__] = new module`) and the FutureWarning."""
    for i, node in enumerate(ast.parse(path.read_text()).body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]:
            continue
        if isinstance(node, ast.Assign) and ast.unparse(node).startswith("sys.modules[__name__] = "):
            continue  # the old path is the new module itself
        call = node.value if isinstance(node, ast.Expr) else None
        if (isinstance(call, ast.Call) and ast.unparse(call.func) == "warnings.warn"
                and "FutureWarning" in [ast.unparse(a) for a in call.args]):
            continue
        return False
    return True


def old_path_files() -> list[Path]:
    """The modules that only keep an old import path alive: `utils/*`, the flat `trainer/*.py`, `demo/assets.py`."""
    utils = [p for p in (PACKAGE / "utils").glob("*.py") if p.name != "__init__.py"]
    trainer = [p for p in (PACKAGE / "trainer").glob("*.py") if p.name not in KEPT_TRAINER_MODULES]
    return sorted(utils + trainer + [PACKAGE / "demo" / "assets.py"])


def test_the_import_graph_has_no_cycle():
    graph, state, stack = _graph(), {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_every_module_has_a_layer():
    assert not sorted(m for m in _graph() if _unit(m) is None)


def test_imports_only_run_downward():
    graph = _graph()
    wrong = []
    for name, deps in sorted(graph.items()):
        layer, unit = _unit(name) or (None, None)
        for dep in sorted(deps):
            dep_layer, dep_unit = _unit(dep) or (None, None)
            if layer is None or dep_layer is None or (dep_unit != unit and dep_layer >= layer):
                wrong.append(f"{name} ({LAYERS[layer][0] if layer is not None else '?'}) imports {dep} "
                             f"({LAYERS[dep_layer][0] if dep_layer is not None else '?'})")
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_the_size_limit():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert not {p: n for p, n in sizes.items() if n > MAX_LINES}


def test_every_package_says_what_it_holds():
    packages = sorted(PACKAGE.rglob("__init__.py"))
    assert len(packages) >= 15  # the root, 7 library packages, trainer and its 6 subpackages, analysis, demo, ...
    for init in packages:
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        first = doc.strip().splitlines()[0] if doc.strip() else ""
        assert first.endswith(".") and len(first.split()) >= 4, f"{init.relative_to(ROOT)}: {first!r}"


def test_the_old_utils_and_flat_trainer_modules_hold_no_logic():
    files = old_path_files()
    assert len(files) >= 60
    assert not [str(p.relative_to(ROOT)) for p in files if not _is_reexport(p)]
    init = PACKAGE / "utils" / "__init__.py"
    assert [type(n) for n in ast.parse(init.read_text()).body] == [ast.Expr]  # its docstring, nothing else


@pytest.mark.parametrize("top", ["implicit_reasoning", "tests", "scripts", "benchmarks"])
def test_nothing_of_ours_imports_an_old_path(top):
    old = {_module_name(p) for p in old_path_files()} | {"implicit_reasoning.utils"}
    users = []
    for path in sorted((ROOT / top).rglob("*.py")):
        if path in old_path_files():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            users += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n in old]
    # the package's own relative imports resolve inside the package: checked by test_imports_only_run_downward
    assert not users, "\n".join(users)
