"""ARCHITECTURE.md stays true: every path it names exists, every public submodule is reachable."""

from __future__ import annotations

import importlib
import re
import types
from pathlib import Path

import pytest

import transfer_core

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "transfer_core"
DOC = REPO / "ARCHITECTURE.md"
FILE_SUFFIXES = (".py", ".toml", ".sh", ".md", ".txt", ".cfg")


def named_paths(text: str) -> list[str]:
    """Backticked names that are paths: ``training/loop.py``, ``data/ingest/``, ``export/templates/*.py``.

    A dotted name after a folder (``training/context.RunContext``) names a module's attribute: its module is
    the path. Placeholders (``<home>/...``) and paths outside the repository (``../shared``) are not checked.
    """
    paths = []
    for name in re.findall(r"`([^`\s]+)`", text):
        if "<" in name or name.startswith("..") or "=" in name:
            continue
        if name.endswith(FILE_SUFFIXES) and "/" not in name.rstrip("/"):
            paths.append(name)
        elif "/" in name:
            head, _, last = name.rpartition("/")
            if "." in last and not last.endswith(FILE_SUFFIXES) and "*" not in last:
                name = f"{head}/{last.split('.', 1)[0]}.py"  # ``training/context.RunContext``
            paths.append(name)
    return paths


def exists(path: str) -> bool:
    """Relative to transfer_core/ or the repository root; a bare file name anywhere in the package or at the root."""
    candidates = [path] if path.endswith(("/", *FILE_SUFFIXES)) or "*" in path else [path, f"{path}.py"]  # `data/decode`
    for root in (CORE, REPO):
        for candidate in candidates:
            if any(root.glob(candidate.rstrip("/"))) if "*" in candidate else (root / candidate).exists():
                return True
    return "/" not in path and any(CORE.rglob(path))


def test_the_path_reader_sees_the_forms_the_doc_uses():
    text = "`training/loop.py` `data/ingest/` `export/templates/*.py` `training/context.RunContext` `<home>/x/` `keras`"
    assert named_paths(text) == ["training/loop.py", "data/ingest/", "export/templates/*.py", "training/context.py"]
    assert not exists("freezing.py") and not exists("data/ingest.py") and exists("data/ingest/")
    assert exists("data/decode") and not exists("data/ingest/nothing")


def test_every_path_architecture_md_names_exists():
    paths = named_paths(DOC.read_text(encoding="utf-8"))
    assert len(paths) > 20  # The doc names its files; a reader that finds none checks nothing.
    missing = sorted({path for path in paths if not exists(path)})
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"


PUBLIC_SUBMODULES = sorted(
    path.stem if path.suffix == ".py" else path.name
    for path in CORE.iterdir()
    if not path.name.startswith("_") and (path.suffix == ".py" or (path / "__init__.py").exists())
)


@pytest.mark.parametrize("name", PUBLIC_SUBMODULES)
def test_every_public_submodule_is_reachable_as_an_attribute(name):
    assert name in transfer_core.__all__, f"transfer_core/__init__.py's _SUBMODULES misses {name!r}"
    module = getattr(transfer_core, name)
    assert isinstance(module, types.ModuleType) and module is importlib.import_module(f"transfer_core.{name}")
