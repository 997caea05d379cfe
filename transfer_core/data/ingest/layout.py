"""Candidates and layout: which part of a path is a wrapper, a split, a class.

Every ingest route (folder, ZIP, uploads) turns its files into :class:`Candidate` objects
gathered in a :class:`SourcePlan`; system, hidden and metadata files are named here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from transfer_core.data.manifest import SkippedFile

# Folder names that mean "this is a split, not a class", in lower case.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


_SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"}


@dataclass
class Candidate:
    """One file to try: where it came from, how to read it, and where it belongs."""

    name: str
    read: Callable[[], bytes]
    label: str | None
    split: str | None = None


@dataclass
class SourcePlan:
    """Candidates plus what the route already knows (skips, notes, folders, layout)."""

    kind: str
    description: str
    candidates: Iterable[Candidate]
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    class_folders: set[str] = field(default_factory=set)
    own_split: bool = False


def junk_reason(base_name: str) -> str | None:
    """Why a file name is a system or hidden file, or None for an ordinary name."""
    lowered = base_name.lower()
    if lowered in _SYSTEM_FILES:
        return "system file, not an image"
    if base_name.startswith("._"):
        return "macOS metadata file, not an image"
    if base_name.startswith("."):
        return "hidden file"
    return None


def junk_folder_reason(folder_name: str) -> str | None:
    """Why a folder's contents are skipped as a whole, or None for an ordinary folder."""
    if folder_name == "__MACOSX":
        return "macOS metadata folder (__MACOSX), not images"
    if folder_name.startswith("."):
        return "hidden folder"
    return None


def plan_candidates(
    entries: list[tuple[str, tuple[str, ...], Callable[[], bytes]]],
    *,
    kind: str,
    description: str,
    folders: Iterable[tuple[str, ...]] = (),
) -> SourcePlan:
    """Work out the layout of relative paths and turn them into candidates.

    Args:
        entries: ``(display name, path parts, reader)`` per file.
        kind: ``"folder"`` or ``"zip"``.
        description: How to name the source in messages.
        folders: Path parts of folders, so empty class folders are known too.
    """
    folders = [parts for parts in folders if parts]
    all_parts = [parts for _, parts, _ in entries]
    prefix = _wrapper_depth(all_parts)
    own_split = _is_split_layout([parts[prefix:] for parts in all_parts])
    source = SourcePlan(kind=kind, description=description, candidates=[], own_split=own_split)
    candidates: list[Candidate] = []
    for name, parts, reader in entries:
        inner = parts[prefix:]
        if len(inner) < 2:
            source.skipped.append(SkippedFile(name, "not inside a class folder"))
        elif not own_split:
            candidates.append(Candidate(name, reader, inner[0]))
        elif SPLIT_ALIASES.get(inner[0].lower()) is None:
            source.skipped.append(SkippedFile(name, "outside the train/val/test folders"))
        elif len(inner) < 3:
            source.skipped.append(SkippedFile(name, "not inside a class folder"))
        else:
            candidates.append(Candidate(name, reader, inner[1], SPLIT_ALIASES[inner[0].lower()]))
    wrapper = all_parts[0][:prefix] if all_parts else ()
    for parts in folders:
        if parts[:prefix] != wrapper:
            continue
        inner = parts[prefix:]
        if own_split and len(inner) >= 2 and inner[0].lower() in SPLIT_ALIASES:
            source.class_folders.add(inner[1])
        elif not own_split and len(inner) >= 1:
            source.class_folders.add(inner[0])
    source.candidates = candidates
    if prefix:
        source.notes.append(f"used {'/'.join(all_parts[0][:prefix])}/ as the top folder")
    return source


def _wrapper_depth(all_parts: list[tuple[str, ...]]) -> int:
    """How many leading folders every file shares and that are only wrappers.

    A shared top folder is a wrapper when some file lies at least two folders
    below it (``wrapper/class/file``); loose files next to the class folders
    (a README) do not stop that, they are skipped later as outside any class.
    """
    prefix = 0
    while all_parts and prefix < 8:
        if any(len(parts) <= prefix + 1 for parts in all_parts):
            break
        if not any(len(parts) >= prefix + 3 for parts in all_parts):
            break
        first = {parts[prefix] for parts in all_parts}
        if len(first) != 1 or next(iter(first)).lower() in SPLIT_ALIASES:
            break
        prefix += 1
    return prefix


def _is_split_layout(all_parts: list[tuple[str, ...]]) -> bool:
    """A source has its own split when a ``train`` folder holds class folders."""
    return any(len(parts) >= 3 and SPLIT_ALIASES.get(parts[0].lower()) == "train" for parts in all_parts)
