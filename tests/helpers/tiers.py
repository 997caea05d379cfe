"""The test tiers: which tests need TensorFlow, found from the source before any test runs.

A test needs TensorFlow (marker ``tf``) when it is marked ``slow`` or ``browser``, lives in a folder of
process, integration or browser tests, or when the code it reaches can import TensorFlow or start a
worker process. "Reaches" is read from the source: the test function, the fixtures it requests (and
theirs), and every function or class of this repository they name, followed through each function's
globals. Reaching TensorFlow means an ``import tensorflow``/``import keras`` in one of those bodies,
naming a module that imports Keras when it loads, starting a child process (the training and
inference workers) or running a Python file by its path (the generated scripts). An AppTest test
also reaches the pages it shows (Home, and each ``pages/<name>.py`` its code names), read without the
branches a button opens; app.py is not read (its standby worker is off in tests, see the conftest). Every other test is ``fast``.

The reading is conservative (a class counts as a whole, a name counts whether or not it is called),
and a guard checks it: under ``-m fast`` the conftest blocks TensorFlow's import in the test process
and the start of worker processes, so a test the reading missed fails with the path that reached it.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.util
import inspect
import re
import sys
import textwrap
import types
from pathlib import Path

TF_ROOTS = frozenset({"tensorflow", "keras", "tf_keras"})
# Folders whose tests start workers or servers by design.
TF_FOLDERS = ("tests/process/", "tests/integration/", "tests/browser/")
TF_MARKERS = ("slow", "browser")
# Functions that start a worker only for a request some earlier call asked (a reload finding it
# pending with its worker gone): that earlier call is where the reach is counted, not here.
ONLY_AFTER_AN_ASK = frozenset({"transfer_core.inference.client._revive"})

REPO_ROOT = Path(__file__).resolve().parents[2]
_REPO_DIRS = tuple(str(REPO_ROOT / name) for name in ("transfer_core", "ui", "tests"))


def _in_repo(module_name: str | None) -> bool:
    module = sys.modules.get(module_name or "")
    path = getattr(module, "__file__", None) or ""
    return path.startswith(_REPO_DIRS)


def _top_level_imports(tree: ast.Module) -> list[str]:
    """Module names a module imports when it loads (not inside functions; ``TYPE_CHECKING`` blocks skipped)."""
    names: list[str] = []

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                names.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.append(node.module)
                names.extend(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try | ast.ClassDef):
                visit(node.body)

    visit(tree.body)
    return names


class TensorFlowReach:
    """Answers "can this object reach TensorFlow?" with the path that does, or None; memoized."""

    def __init__(self) -> None:
        self._objects: dict[int, str | None] = {}
        self._modules: dict[str, str | None] = {}

    # Modules -------------------------------------------------------------------------------------
    def module(self, name: str) -> str | None:
        """Why importing module ``name`` imports TensorFlow (None if it does not, or is not a module)."""
        if name.split(".", 1)[0] in TF_ROOTS:
            return f"imports {name}"
        if name in self._modules:
            return self._modules[name]
        self._modules[name] = None  # Cycles: a module already being read adds nothing.
        reason = None
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):
            spec = None
        origin = getattr(spec, "origin", None) or ""
        if origin.endswith(".py") and origin.startswith(_REPO_DIRS):
            tree = ast.parse(Path(origin).read_text(encoding="utf-8"))
            for imported in _top_level_imports(tree):
                inner = self.module(imported)
                if inner:
                    reason = f"{name} loads {inner}"
                    break
        self._modules[name] = reason
        return reason

    # Objects -------------------------------------------------------------------------------------
    def object(self, value: object) -> str | None:
        """Why ``value`` (a module, function, class or a table of them) can reach TensorFlow."""
        if isinstance(value, types.ModuleType):
            return self.module(value.__name__)
        if isinstance(value, dict):
            value = tuple(value.values())
        if isinstance(value, tuple | list | frozenset | set):
            return next((reason for item in value if callable(item) and (reason := self.object(item))), None)
        unwrap_fixture = getattr(value, "_get_wrapped_function", None)  # A @pytest.fixture referenced by name.
        value = unwrap_fixture() if callable(unwrap_fixture) else value
        function = inspect.unwrap(value) if callable(value) else None
        if not (inspect.isfunction(function) or inspect.isclass(function)):
            return None
        if not _in_repo(getattr(function, "__module__", None)):
            return None
        if f"{function.__module__}.{function.__qualname__}" in ONLY_AFTER_AN_ASK:
            return None
        key = id(function)
        if key in self._objects:
            return self._objects[key]
        self._objects[key] = None
        reason = self._class(function) if inspect.isclass(function) else self._function(function)
        self._objects[key] = reason
        return reason

    def _class(self, cls: type) -> str | None:
        if reason := self.module(cls.__module__):
            return reason
        for member in vars(cls).values():
            inner = member.__func__ if isinstance(member, classmethod | staticmethod) else member
            inner = inner.fget if isinstance(inner, property) else inner
            if inspect.isfunction(inner) and (reason := self._function(inner)):
                return f"{cls.__qualname__} -> {reason}"
        return None

    def _function(self, function: types.FunctionType) -> str | None:
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        except (OSError, TypeError, SyntaxError):
            return None
        name = function.__qualname__
        namespace = {**function.__globals__, **self._local_imports(tree)}
        for node in ast.walk(tree):
            reason = self._node(node, namespace)
            if reason:
                return f"{name} -> {reason}"
        return None

    def _local_imports(self, tree: ast.AST) -> dict[str, object]:
        """The names a function imports inside its body (``from transfer_core import zoo``), as objects.

        Only modules that load no TensorFlow are imported here; the others are reasons already.
        """
        names: dict[str, object] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and not self.module(node.module):
                for alias in node.names:
                    if _in_repo_name(node.module) and (value := _attribute(node.module, alias.name)) is not None:
                        names[alias.asname or alias.name] = value
        return names

    def _node(self, node: ast.AST, namespace: dict) -> str | None:
        if isinstance(node, ast.Import):
            return next((r for alias in node.names if (r := self.module(alias.name))), None)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if reason := self.module(node.module):
                return reason
            return next((r for alias in node.names if (r := self._qualified(node.module, alias.name))), None)
        if isinstance(node, ast.Name) and node.id in namespace:
            return self.object(namespace[node.id])
        if isinstance(node, ast.Attribute) and node.attr in ("spec_from_file_location", "run_path"):
            return "runs a Python file by its path (a generated script imports Keras)"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            base = namespace.get(node.value.id)
            if base is subprocess_module() and node.attr in ("Popen", "run", "call", "check_call", "check_output"):
                return "starts a child process"
            if isinstance(base, types.ModuleType) and _in_repo(base.__name__):
                return self._qualified(base.__name__, node.attr)
        return None

    def _qualified(self, module_name: str, attribute: str) -> str | None:
        """``module_name.attribute``: a submodule, or a name defined or re-exported there."""
        if module_name.split(".", 1)[0] in TF_ROOTS:
            return f"imports {module_name}"
        submodule = f"{module_name}.{attribute}"
        if _is_module(submodule):
            return self.module(submodule)
        if self.module(module_name):
            return self.module(module_name)
        return self.object(_attribute(module_name, attribute))


def _attribute(module_name: str, attribute: str) -> object | None:
    """``module_name.attribute`` as an object; call only for modules that load no TensorFlow."""
    module = sys.modules.get(module_name)
    try:
        module = module or importlib.import_module(module_name)
        return getattr(module, attribute)
    except Exception:  # noqa: BLE001 - a name this reading cannot resolve is one it cannot follow.
        return None


def _in_repo_name(module_name: str) -> bool:
    return module_name.split(".", 1)[0] in ("transfer_core", "helpers", "ui")


def subprocess_module() -> types.ModuleType:
    return importlib.import_module("subprocess")


def _is_module(name: str) -> bool:
    if name in sys.modules:
        return isinstance(sys.modules[name], types.ModuleType)
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


_PAGE = re.compile(r"pages/\w+\.py")


def _click_names(tree: ast.Module) -> set[str]:
    """Names a page assigns from a button (``submitted = st.form_submit_button(...)``)."""
    return {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and "button(" in ast.unparse(node.value)
            for target in node.targets if isinstance(target, ast.Name)}


def _shown_nodes(node: ast.AST, clicks: set[str]):
    """The page's code that runs when it is shown: every node except the branches a click opens."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If):
            test = ast.unparse(child.test)
            if "button(" in test or any(re.search(rf"\b{name}\b", test) for name in clicks):
                for other in child.orelse:
                    yield from _shown_nodes(other, clicks)
                continue
        yield from _shown_nodes(child, clicks)


def page_reach(page: str, reach: TensorFlowReach) -> str | None:
    """Why showing ``pages/<name>.py`` (no click) can reach TensorFlow or start a worker, or None."""
    tree = ast.parse((REPO_ROOT / page).read_text(encoding="utf-8"))
    namespace: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            namespace.update({(a.asname or a.name).split(".")[0]: importlib.import_module(a.name.split(".")[0])
                              for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module:
            if reason := reach.module(node.module):
                return reason
            for alias in node.names:
                value = _attribute(node.module, alias.name)
                if value is None and _is_module(f"{node.module}.{alias.name}"):
                    value = importlib.import_module(f"{node.module}.{alias.name}")
                namespace[alias.asname or alias.name] = value
    clicks = _click_names(tree)
    return next((f"{page} -> {r}" for node in _shown_nodes(tree, clicks) if (r := reach._node(node, namespace))), None)


def _pages_shown(functions: list, parameters: list[str]) -> set[str]:
    """The pages an AppTest test shows: those its code or parameters name, and Home (where the app opens)."""
    sources = [_source(function) for function in functions]
    if not any("AppTest" in text or "open_page(" in text for text in sources):
        return set()
    sources += parameters
    return {"pages/home.py", *(page for text in sources for page in _PAGE.findall(text))}


def _source(function) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


def why_tensorflow(item, reach: TensorFlowReach) -> str | None:
    """Why the pytest ``item`` needs TensorFlow, or None when it belongs to the fast tier."""
    for marker in TF_MARKERS:
        if item.get_closest_marker(marker) is not None:
            return f"marked {marker}"
    path = item.nodeid.replace("\\", "/")
    if any(f"/{folder}" in f"/{path}" for folder in TF_FOLDERS):
        return "in a folder of process, integration or browser tests"
    function = getattr(item, "function", None)
    if function is not None and (reason := reach.object(function)):
        return reason
    fixtures = _fixture_functions(item)
    for fixture in fixtures:
        if reason := reach.object(fixture):
            return f"fixture {reason}"
    parameters = [str(value) for value in getattr(getattr(item, "callspec", None), "params", {}).values()]
    for page in sorted(_pages_shown([function, *fixtures], parameters)):
        if reason := page_reach(page, reach):
            return f"shows {reason}"
    return None


def _fixture_functions(item) -> list:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    return [definition.func for definitions in info.name2fixturedefs.values() for definition in definitions]


class TensorFlowGuard:
    """Under ``-m fast``: TensorFlow cannot be imported and no worker (``python -m transfer_core...``) can start.

    Each attempt raises at once (with the stack that shows who tried) and is also recorded, so a
    test that catches the error still fails in :meth:`check` (the conftest calls it after each test).
    """

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def install(self) -> None:
        import subprocess

        guard = self

        class _BlockTensorFlow(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):  # noqa: ARG002 - the finder protocol.
                if name.split(".", 1)[0] in TF_ROOTS:
                    guard.refuse(f"import {name}")
                return None

        class _NoPythonChild(subprocess.Popen):
            def __init__(self, args, *rest, **kwargs):
                words = [str(word) for word in args] if isinstance(args, list | tuple) else [str(args)]
                if words[:1] == [sys.executable] and any(word.startswith("transfer_core") for word in words):
                    guard.refuse(f"a worker process {words[1:4]}")
                super().__init__(args, *rest, **kwargs)

        for name in TF_ROOTS:
            if name in sys.modules:
                raise RuntimeError(f"{name} was imported before the fast tier's guard; the fast tier cannot check.")
        sys.meta_path.insert(0, _BlockTensorFlow())
        subprocess.Popen = _NoPythonChild

    def refuse(self, what: str) -> None:
        self.attempts.append(what)
        raise ImportError(f"A fast test tried {what}: it needs TensorFlow, so it is not fast. Teach "
                          "tests/helpers/tiers.py how to see it (the traceback shows the path).")

    def check(self) -> None:
        attempts, self.attempts = self.attempts, []
        if attempts:
            raise AssertionError(f"This fast test needs TensorFlow: it tried {', '.join(attempts)}.")
