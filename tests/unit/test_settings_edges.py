"""Settings are read from the environment once, at the edges, and passed in everywhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from transfer_core import zoo
from transfer_core.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]

# The entry points: the command line, the app's per-process settings, and the worker processes.
EDGE_MODULES = {
    "transfer_core/cli.py",
    "transfer_core/jobs/runner.py",
    "transfer_core/jobs/standby_worker.py",
    "transfer_core/inference/worker.py",
    "ui/state.py",
}


def _from_env_calls(path: Path) -> list[int]:
    """Lines of ``<anything>.from_env(...)`` calls in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_env"
    ]


def test_settings_are_read_from_the_environment_only_at_the_edges() -> None:
    offenders = []
    for folder in ("transfer_core", "ui", "pages"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if relative in EDGE_MODULES:
                continue
            offenders.extend(f"{relative}:{line}" for line in _from_env_calls(path))
    assert offenders == [], f"Settings.from_env() outside the edge modules {sorted(EDGE_MODULES)}: {offenders}"


def test_the_scan_sees_a_from_env_call(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("def f(settings=None):\n    return settings or Settings.from_env()\n")
    assert _from_env_calls(module) == [2]


def test_every_edge_module_exists() -> None:
    missing = [name for name in EDGE_MODULES if not (REPO_ROOT / name).is_file()]
    assert missing == []


def test_offline_is_a_setting_read_at_the_edge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRANSFER_OFFLINE", "1")
    assert Settings.from_env().offline
    monkeypatch.setenv("TRANSFER_OFFLINE", "0")
    assert not Settings.from_env().offline
    monkeypatch.delenv("TRANSFER_OFFLINE")
    assert Settings.from_env().offline  # Offline unless TRANSFER_OFFLINE=0, as in code.
    # Inside the library only the passed settings count: the environment allows downloads here,
    # the settings do not, so a missing file fails at once instead of being downloaded.
    monkeypatch.setenv("TRANSFER_OFFLINE", "0")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with pytest.raises(zoo.WeightsUnavailableError, match="downloads are off"):
        zoo.resolve_weights("resnet50", settings=Settings(weights_dir=tmp_path, offline=True))


def test_imagenet_backbone_needs_settings() -> None:
    with pytest.raises(ValueError, match="settings"):
        zoo.build_backbone("mobilenet_v2_0.35", 96)
