"""The rules of ARCHITECTURE.md ("What may import what"), checked on the source.

Static (AST) checks, no imports of the checked modules: every import statement counts, including
the ones inside functions (a cycle hidden in a function is still a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "transfer_core"
MAX_MODULE_LINES = 520  # "none over about 500"
# Leaf modules: shared internals that import nothing of the project but the configuration.
LEAVES = {
    "transfer_core.fileio": set(),
    "transfer_core.processes": set(),
    "transfer_core.data.decode": set(),
    "transfer_core.report": set(),
    "transfer_core.events": set(),
    "transfer_core.strategies": set(),
    "transfer_core.config": {"transfer_core.strategies"},
}
# Modules a web-server process imports must not pull TensorFlow in at import time; checked for the
# modules' top-level imports (function-level imports of TensorFlow are how the rest stays lazy).
HEAVY = ("tensorflow", "keras")
# Imported only inside worker processes (never by the package's import chain): a Keras callback class
# has to subclass keras.callbacks.Callback where it is defined.
WORKER_ONLY = {"transfer_core.training.progress"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(CORE.rglob("*.py")) if "templates" not in path.parts}


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    is_package = MODULES.get(module, Path()).name == "__init__.py"
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None, int, bool]]:
    """(imported module, imported name or None, line, at top level) for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, None, node.lineno, id(node) in top_level) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for alias in node.names:
                found.append((target, alias.name, node.lineno, id(node) in top_level))
    return found


def _project_target(target: str, name: str | None) -> str | None:
    """The project module an import refers to (``from pkg import module`` counts as the module)."""
    if name and f"{target}.{name}" in MODULES:
        return f"{target}.{name}"
    return target if target in MODULES else None


def test_no_module_imports_a_private_name_of_another():
    problems = []
    for module in MODULES:
        for target, name, line, _ in _imports(module):
            if name and name.startswith("_") and not name.startswith("__") and target in MODULES and target != module:
                problems.append(f"{module}:{line} imports {name} from {target}")
    assert not problems, "\n".join(problems)


def test_no_import_cycles_including_imports_inside_functions():
    graph = {module: set() for module in MODULES}
    for module in MODULES:
        for target, name, _, _ in _imports(module):
            project = _project_target(target, name)
            # A package's __init__ re-exporting its own modules is not a dependency of those modules.
            if project and project != module and not project.startswith(module + "."):
                graph[module].add(project)
    for module in graph:  # Importing a.b runs a/__init__ first: depending on a.b means depending on a.
        for target in list(graph[module]):
            parent = target.rsplit(".", 1)[0]
            if parent in MODULES and parent != "transfer_core" and not module.startswith(parent + "."):
                graph[module].add(parent)
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "active"
        for target in sorted(graph[node]):
            if state.get(target) == "active":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_leaf_modules_import_nothing_of_the_project_but_the_configuration(leaf):
    allowed = {"transfer_core.config"} | LEAVES[leaf]
    used = {_project_target(t, n) for t, n, _, _ in _imports(leaf)} - {None, leaf}
    assert used <= allowed, f"{leaf} imports {sorted(used - allowed)}"


def test_the_library_never_imports_streamlit_and_pages_never_import_tensorflow():
    for module in MODULES:
        assert not [t for t, _, _, _ in _imports(module) if t.split(".")[0] == "streamlit"], module
    for path in [REPO / "app.py", *sorted((REPO / "pages").glob("*.py")), *sorted((REPO / "ui").glob("*.py"))]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.split(".")[0] in HEAVY], f"{path.name}:{node.lineno} imports {names}"


def test_no_library_module_imports_tensorflow_at_import_time():
    problems = [f"{module}:{line}" for module in MODULES for target, _, line, top in _imports(module)
                if top and target.split(".")[0] in HEAVY and module not in WORKER_ONLY]
    assert not problems, "TensorFlow/Keras imported at module level (import it inside the function):\n" + "\n".join(
        problems)


def test_worker_only_modules_are_imported_lazily():
    """The modules allowed to import TensorFlow at the top are imported inside functions only."""
    for module in MODULES:
        for target, name, line, top in _imports(module):
            assert not (top and _project_target(target, name) in WORKER_ONLY), f"{module}:{line} imports it at the top"


def test_modules_stay_small():
    sizes = {module: len(path.read_text(encoding="utf-8").splitlines()) for module, path in MODULES.items()}
    large = {module: lines for module, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not large, f"modules over {MAX_MODULE_LINES} lines: {large}"
