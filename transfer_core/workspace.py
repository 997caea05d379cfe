"""Per-session workspaces: uploaded data sets and runs of one browser session.

A workspace id is 32 random hex digits, so one session cannot guess another's
folder. Everything a session writes lives under ``<home>/workspaces/<id>/``:
``datasets/<name>/`` (ingested data sets) and ``runs/`` (its run store).
"""

from __future__ import annotations

import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from transfer_core.config import Settings
from transfer_core.runs import RunStore

_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-").lower()
    return slug[:40] or "dataset"


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
