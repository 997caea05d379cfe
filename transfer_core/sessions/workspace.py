"""Per-session workspaces: uploaded data sets and runs of one browser session.

A workspace id is 32 random hex digits, so one session cannot guess another's
folder. Everything a session writes lives under ``<home>/workspaces/<id>/``:
``datasets/<name>/`` (ingested data sets), ``runs/`` (its run store) and
``session.json`` (the choices made in the app, so a reload or a new tab keeps them).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_core.config import FreezePlan, ModelSpec, Settings, TrainConfig
from transfer_core.fileio import atomic_write_json
from transfer_core.runs import RunStore

_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
CHOICES_FILE = "session.json"
CHOICES_VERSION = 1


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-").lower()
    return slug[:40] or "dataset"


@dataclass(frozen=True)
class SessionChoices:
    """What a person chose in the app, kept in the workspace so a reload or a new tab restores it.

    Args:
        dataset: Folder name of the active data set under ``datasets/`` ("" for none); a name,
            not a path, so a workspace restored elsewhere still finds it.
        model: The Model page's backbone, size, weights and head, or None for the defaults.
        freeze: The Model page's freeze plan, or None for the default.
        train: The Train form's last values, or None for the defaults.
    """

    dataset: str = ""
    model: ModelSpec | None = None
    freeze: FreezePlan | None = None
    train: TrainConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": CHOICES_VERSION,
            "dataset": self.dataset,
            "model": self.model.to_dict() if self.model else None,
            "freeze": self.freeze.to_dict() if self.freeze else None,
            "train": self.train.to_dict() if self.train else None,
        }

    @classmethod
    def from_dict(cls, data: Any) -> tuple[SessionChoices, list[str]]:
        """Choices from a saved dict, tolerantly: each unreadable part falls back to its default.

        Returns:
            ``(choices, warnings)``; a warning names each part that was dropped and why.
        """
        if not isinstance(data, dict):
            return cls(), [f"the saved choices are not a JSON object (received {type(data).__name__})"]
        warnings = []
        version = data.get("version")
        if isinstance(version, int) and version > CHOICES_VERSION:
            warnings.append(f"the saved choices come from a newer version ({version}); kept what this one reads")
        dataset = data.get("dataset") or ""
        if not isinstance(dataset, str) or "/" in dataset or "\\" in dataset or dataset.startswith("."):
            warnings.append(f"the saved data set name is not a folder name (received {dataset!r})")
            dataset = ""
        parts: dict[str, Any] = {}
        for key, kind in (("model", ModelSpec), ("freeze", FreezePlan), ("train", TrainConfig)):
            value = data.get(key)
            if value is None:
                continue
            try:
                parts[key] = kind.from_dict(value)
            except (TypeError, ValueError) as error:
                warnings.append(f"the saved {key} settings were not usable ({error})")
        return cls(dataset=dataset, **parts), warnings


@dataclass(frozen=True)
class Workspace:
    """One session's folder. Create with :meth:`open`."""

    workspace_id: str
    root: Path

    @classmethod
    def open(cls, settings: Settings, workspace_id: str | None = None) -> Workspace:
        """Open the workspace ``workspace_id``, or a new one when it is None or malformed.

        Args:
            settings: Where workspaces live.
            workspace_id: An id from an earlier :meth:`open` (e.g. kept in the URL).

        Returns:
            The workspace; its folders exist.
        """
        if workspace_id is None or not _ID_PATTERN.match(workspace_id):
            workspace_id = secrets.token_hex(16)
        root = Path(settings.workspaces_dir) / workspace_id
        (root / "datasets").mkdir(parents=True, exist_ok=True)
        (root / "runs").mkdir(parents=True, exist_ok=True)
        return cls(workspace_id, root)

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def store(self) -> RunStore:
        return RunStore(self.runs_dir)

    def new_dataset_dir(self, name: str) -> Path:
        """A fresh, not yet existing folder for a data set called ``name``."""
        return self.datasets_dir / f"{_slug(name)}-{secrets.token_hex(3)}"

    def dataset_dirs(self) -> list[Path]:
        """Ingested data sets (folders with a dataset.json), newest first."""
        found = [p for p in self.datasets_dir.iterdir() if (p / "dataset.json").exists()]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def delete_dataset(self, path: Path) -> None:
        """Delete one of this workspace's data sets (refuses paths outside it)."""
        path = Path(path).resolve()
        if path.parent != self.datasets_dir.resolve():
            raise ValueError(f"Not a data set of this workspace. Received: path={path}")
        shutil.rmtree(path)

    def load_choices(self) -> tuple[SessionChoices, list[str]]:
        """The choices saved by :meth:`save_choices`; defaults when there are none.

        A damaged, foreign or older file never raises: it gives the defaults (or what
        could be read) plus warnings that say what was dropped.

        Returns:
            ``(choices, warnings)``.
        """
        path = self.root / CHOICES_FILE
        if not path.is_file():
            return SessionChoices(), []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            return SessionChoices(), [f"the saved choices could not be read ({type(error).__name__}: {error})"]
        choices, warnings = SessionChoices.from_dict(data)
        if choices.dataset and not (self.datasets_dir / choices.dataset / "dataset.json").is_file():
            choices = SessionChoices(model=choices.model, freeze=choices.freeze, train=choices.train)
        return choices, warnings

    def save_choices(self, choices: SessionChoices) -> None:
        """Write the choices atomically, so a tab that reads them never sees half a file."""
        atomic_write_json(self.root / CHOICES_FILE, choices.to_dict())

    def disk_usage_mb(self) -> float:
        total = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        return total / 1_000_000

    def check_quota(self, settings: Settings, incoming_bytes: int = 0) -> None:
        """Refuse new data or runs once this session would use more disk than allowed.

        Args:
            settings: Holds ``max_session_disk_mb``.
            incoming_bytes: Size of what is about to be written (an upload, say).

        Raises:
            QuotaExceededError: With the usage, the limit and what to do.
        """
        used = self.disk_usage_mb()
        incoming = incoming_bytes / 1_000_000
        if used + incoming > settings.max_session_disk_mb:
            raise QuotaExceededError(
                f"This session would use {used + incoming:.0f} MB of disk, over its limit of "
                f"{settings.max_session_disk_mb} MB (TRANSFER_MAX_SESSION_DISK_MB). Delete data sets or "
                "runs you no longer need and try again."
            )


class QuotaExceededError(RuntimeError):
    """A session tried to store more than ``Settings.max_session_disk_mb``."""
