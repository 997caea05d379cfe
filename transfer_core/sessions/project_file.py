"""Project files: one ZIP that holds a workspace's data sets, runs and choices, to save and open again.

Layout of the archive::

    project.json                 manifest: format name and version, what is inside, the choices
    datasets/<folder>/...        each data set folder as it is in the workspace, every version included
    runs/<run id>/...            each run that is not active (its worker.pid left out)

Opening one is treated like any upload from a stranger. Before anything is written the
archive is checked with the same ZIP checks as data set ingest (:mod:`transfer_core.data.zip_safety`:
size and entry count first, then traversal paths, symbolic links, encryption, sizes and
likely bombs), every entry must belong to a data set or run named in the manifest, and
the total uncompressed size must fit the session's disk quota. Entries are extracted into
a staging folder inside the workspace and moved into place; names that exist already get
a suffix, so nothing existing is overwritten.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from transfer_core.config import Settings
from transfer_core.data.manifest import DataError, load_dataset, write_dataset_json
from transfer_core.data.versions import check_versions
from transfer_core.data.zip_safety import (
    MEBIBYTE,
    open_zip_archive,
    open_zip_source,
    unsafe_entry_reason,
    zip_entry_hazard,
    zip_entry_name,
)
from transfer_core.fileio import atomic_write_json
from transfer_core.runs import load_run
from transfer_core.sessions.workspace import QuotaExceededError, SessionChoices, Workspace

PROJECT_FORMAT = "transfer-lab-project"
# 2: a data set may hold versions (versions/<n>/, dataset.json's "version"); format 1 files open as before.
PROJECT_VERSION = 2
MANIFEST_FILE = "project.json"
_MANIFEST_LIMIT = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")
_LEFT_OUT = {"worker.pid"}  # A live process id means nothing on another machine.
# Already compressed: deflating them again costs CPU and saves nothing.
_STORED_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".keras", ".zip", ".npz"}


class ProjectError(ValueError):
    """A project file that cannot be opened; the message names the file and the reason."""


@dataclass(frozen=True)
class OpenedProject:
    """What opening a project added to the workspace.

    Args:
        datasets: Data set folders created in the workspace, in the project's order.
        runs: Run ids created in the workspace.
        renamed: ``(name in the project, name given here)`` for each name that was taken.
        choices: The project's choices with data set names as given here, or None if it had none.
    """

    datasets: tuple[str, ...]
    runs: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...]
    choices: SessionChoices | None


def export_project(workspace: Workspace) -> bytes:
    """A project file (ZIP bytes) with the workspace's data sets, finished runs and saved choices.

    Args:
        workspace: The workspace to save.

    Returns:
        The archive's bytes, ready for a download.
    """
    datasets = [path.name for path in workspace.dataset_dirs()]
    runs = [info.run_id for info in workspace.store.list_runs() if not info.is_active]
    choices, _ = workspace.load_choices()
    manifest = {
        "format": PROJECT_FORMAT,
        "version": PROJECT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "datasets": datasets,
        "runs": runs,
        "choices": choices.to_dict(),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr(MANIFEST_FILE, json.dumps(manifest, indent=2))
        for kind, names, parent in (("datasets", datasets, workspace.datasets_dir), ("runs", runs, workspace.runs_dir)):
            for name in names:
                _add_folder(archive, parent / name, f"{kind}/{name}")
    return buffer.getvalue()


def _add_folder(archive: zipfile.ZipFile, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        # Hidden names are temporary files of atomic writes; links are never followed.
        if path.is_symlink() or not path.is_file() or path.name in _LEFT_OUT:
            continue
        if any(part.startswith(".") for part in relative.parts):
            continue
        method = zipfile.ZIP_STORED if path.suffix.lower() in _STORED_SUFFIXES else zipfile.ZIP_DEFLATED
        archive.write(path, f"{prefix}/{relative.as_posix()}", compress_type=method)


def open_project(
    workspace: Workspace,
    source: str | os.PathLike | bytes | BinaryIO,
    settings: Settings,
    *,
    file_name: str = "",
) -> OpenedProject:
    """Restore a project file's data sets and runs into ``workspace``, after checking all of it.

    Args:
        workspace: Where they go.
        source: The project file: a path, its bytes, or a binary file object.
        settings: Limits: ``max_session_disk_mb`` (archive size and quota), ``max_upload_mb``
            (largest single entry), ``max_files`` (4 x this many entries at most).
        file_name: The name to quote in messages (the uploaded file's name).

    Returns:
        The :class:`OpenedProject`.

    Raises:
        ProjectError: When the file is not a project file, is hostile or broken, comes from a
            newer format version, or does not fit the session's disk quota. Nothing is added then.
    """
    label = file_name or (Path(source).name if isinstance(source, str | os.PathLike) else "the project file")
    try:
        handle, _, owned = open_zip_source(source, settings.max_session_disk_mb)
    except DataError as error:
        raise ProjectError(f"{label}: {error}") from None
    try:
        archive = open_zip_archive(handle, label, settings.max_files * 4)
        with archive:
            manifest = _read_manifest(archive, label)
            plan = _plan_entries(archive, manifest, label, settings)
            try:
                workspace.check_quota(settings, incoming_bytes=sum(info.file_size for info, _ in plan))
            except QuotaExceededError as error:
                raise ProjectError(f"{label} does not fit: {error}") from None
            return _extract(workspace, archive, plan, manifest, label, settings)
    except DataError as error:
        raise ProjectError(str(error)) from None
    finally:
        if owned:
            handle.close()


def _read_manifest(archive: zipfile.ZipFile, label: str) -> dict[str, Any]:
    try:
        info = archive.getinfo(MANIFEST_FILE)
    except KeyError:
        raise ProjectError(
            f"{label} is not a Transfer Lab project file: it has no {MANIFEST_FILE}. "
            "(A ZIP of images is added on the Data page under 'ZIP file'.)"
        ) from None
    if info.file_size > _MANIFEST_LIMIT:
        raise ProjectError(f"{label}: {MANIFEST_FILE} is {info.file_size:,} bytes, too large for a manifest.")
    try:
        with archive.open(info) as handle:
            manifest = json.loads(handle.read(_MANIFEST_LIMIT + 1).decode("utf-8"))
    except (zipfile.BadZipFile, UnicodeDecodeError, ValueError, OSError) as error:
        raise ProjectError(f"{label}: {MANIFEST_FILE} is unreadable ({type(error).__name__}: {error}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PROJECT_FORMAT:
        raise ProjectError(f"{label} is not a Transfer Lab project file ({MANIFEST_FILE} names another format).")
    version = manifest.get("version")
    if not isinstance(version, int) or version < 1:
        raise ProjectError(f"{label}: {MANIFEST_FILE} has no valid format version. Received: version={version!r}")
    if version > PROJECT_VERSION:
        raise ProjectError(
            f"{label} was saved by a newer Transfer Lab (project format {version}); this one opens format "
            f"{PROJECT_VERSION} and older. Update Transfer Lab to open it."
        )
    for key in ("datasets", "runs"):
        names = manifest.get(key)
        if not isinstance(names, list) or not all(isinstance(n, str) and _NAME.match(n) for n in names):
            raise ProjectError(f"{label}: {MANIFEST_FILE} lists {key} with unusable names. Received: {names!r}")
    return manifest


def _plan_entries(
    archive: zipfile.ZipFile, manifest: dict[str, Any], label: str, settings: Settings
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Every file entry with its path parts, after the safety checks; refuses the archive on the first hazard."""
    listed = {("datasets", name) for name in manifest["datasets"]} | {("runs", name) for name in manifest["runs"]}
    per_file_limit = settings.max_upload_mb * MEBIBYTE
    entry_limit = settings.max_files * 4  # Room for a few data sets of max_files images, plus runs.
    if len(archive.infolist()) > entry_limit + 1:
        raise ProjectError(
            f"{label} has {len(archive.infolist()):,} entries, more than the limit of {entry_limit:,} "
            "(4 x TRANSFER_MAX_FILES)."
        )
    plan = []
    for info in archive.infolist():
        name = zip_entry_name(info)
        if name == MANIFEST_FILE:
            continue
        reason = unsafe_entry_reason(name) or zip_entry_hazard(info, per_file_limit)
        parts = tuple(part for part in name.split("/") if part not in ("", "."))
        if reason is None and (len(parts) < 2 or (parts[0], parts[1]) not in listed):
            reason = "not part of a data set or run listed in project.json"
        if reason is None and any(part.startswith(".") for part in parts):
            reason = "hidden files are not restored"
        if reason:
            raise ProjectError(f"{label} was refused: entry {name!r}: {reason}.")
        if not info.is_dir():
            plan.append((info, parts))
    return plan


def _extract(
    workspace: Workspace,
    archive: zipfile.ZipFile,
    plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]],
    manifest: dict[str, Any],
    label: str,
    settings: Settings,
) -> OpenedProject:
    """Extract into a staging folder in the workspace, check what came out, then move it into place."""
    staging = workspace.root / f".opening-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        for info, parts in plan:
            _extract_entry(archive, info, staging.joinpath(*parts), staging, label)
        for name in manifest["datasets"]:
            try:
                load_dataset(staging / "datasets" / name)
                check_versions(staging / "datasets" / name)  # Every version's manifest, like any upload.
            except DataError as error:
                reason = str(error).replace(f"{staging / 'datasets'}{os.sep}", "")  # No staging paths in messages.
                raise ProjectError(f"{label}: data set {name!r} is broken ({reason})") from None
        return _move_into_place(workspace, staging, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, staging: Path, label: str) -> None:
    if not target.resolve().is_relative_to(staging.resolve()):  # The name checks make this impossible; be sure.
        raise ProjectError(f"{label} was refused: entry {info.filename!r} leads outside the workspace.")
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with archive.open(info) as source, open(target, "xb") as out:
            # zipfile stops at the declared size and checks the CRC; count anyway, in chunks.
            while chunk := source.read(MEBIBYTE):
                written += len(chunk)
                if written > info.file_size:
                    raise ProjectError(f"{label} was refused: entry {info.filename!r} is larger than it says.")
                out.write(chunk)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as error:
        raise ProjectError(f"{label}: entry {info.filename!r} is corrupt ({type(error).__name__}: {error}).") from None
    except FileExistsError:
        raise ProjectError(f"{label} was refused: entry {info.filename!r} appears twice.") from None
    # Keep the saved modification time: a run's creation time is its config.json's.
    with contextlib.suppress(OverflowError, ValueError, OSError):
        stamp = time.mktime((*info.date_time, 0, 0, -1))
        os.utime(target, (stamp, stamp))


def _free_name(parent: Path, name: str) -> str:
    """``name`` if nothing in ``parent`` has it, else ``name-2``, ``name-3``, ..."""
    candidate, number = name, 1
    while (parent / candidate).exists():
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def _move_into_place(workspace: Workspace, staging: Path, manifest: dict[str, Any]) -> OpenedProject:
    renamed: list[tuple[str, str]] = []
    dataset_names: dict[str, str] = {}
    for name in manifest["datasets"]:
        given = _free_name(workspace.datasets_dir, name)
        os.rename(staging / "datasets" / name, workspace.datasets_dir / given)
        write_dataset_json(load_dataset(workspace.datasets_dir / given))  # Its root is now here.
        dataset_names[name] = given
        if given != name:
            renamed.append((name, given))
    run_ids = []
    for run_id in manifest["runs"]:
        source = staging / "runs" / run_id
        if not (source / "config.json").is_file():
            continue  # A listed run with no files: nothing to restore.
        _point_run_at(source, dataset_names, workspace)
        given = _free_name(workspace.runs_dir, run_id)
        os.rename(source, workspace.runs_dir / given)
        load_run(workspace.runs_dir / given)  # Reads (and so checks) the files; an unreadable run lists as failed.
        run_ids.append(given)
        if given != run_id:
            renamed.append((run_id, given))
    return OpenedProject(tuple(dataset_names.values()), tuple(run_ids), tuple(renamed),
                         _choices_here(manifest.get("choices"), dataset_names))


def _point_run_at(run_dir: Path, dataset_names: dict[str, str], workspace: Workspace) -> None:
    """Make a run's config name its data set's folder in this workspace (it held the old absolute path)."""
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        old_root = config["dataset"]["root"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # The run store shows an unreadable config as a failed run, with the reason.
    name = Path(str(old_root)).name
    if name in dataset_names:
        config["dataset"]["root"] = str((workspace.datasets_dir / dataset_names[name]).resolve())
        saved = (run_dir / "config.json").stat()
        atomic_write_json(run_dir / "config.json", config)
        os.utime(run_dir / "config.json", (saved.st_atime, saved.st_mtime))  # Still the run's creation time.


def _choices_here(data: Any, dataset_names: dict[str, str]) -> SessionChoices | None:
    if data is None:
        return None
    choices, _ = SessionChoices.from_dict(data)
    dataset = dataset_names.get(choices.dataset, "")
    return SessionChoices(dataset=dataset, model=choices.model, freeze=choices.freeze, train=choices.train)
