"""Class assignments: a teacher publishes a task on one of their data sets, students start from it.

An assignment lives outside every workspace, under ``<home>/assignments/<id>/``::

    assignment.json   Assignment.to_dict(): title, instructions, limits, classes, counts
    public/           a data set (manifest, dataset.json, images/) without the hidden test images
    hidden/           a data set holding only the hidden test images (split "test"); read by the
                      scoring step in a worker, never copied, listed or served to a student
    scores/           one JSON file per scored run (transfer_core.sessions.leaderboard)

Publishing picks the hidden test images per class by content hash and seed (as the data set split
does) and leaves out every copy of a hidden image's content from the public data set, so a duplicate
file cannot leak it. A student's "start" copies ``public/`` into their workspace and marks the copy
with the assignment's id (``assignment.json`` in the data set folder); runs on that copy are scored.

No Streamlit, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_core.config import DatasetSpec, RunConfig, Settings
from transfer_core.fileio import atomic_write_json

ASSIGNMENTS_FOLDER = "assignments"
ASSIGNMENT_FILE = "assignment.json"
# In a student's copy of the data: which assignment it belongs to (the id only).
MARKER_FILE = "assignment.json"
PUBLIC_FOLDER = "public"
HIDDEN_FOLDER = "hidden"
SCORES_FOLDER = "scores"
MAX_TITLE_LENGTH = 120
MAX_INSTRUCTIONS_LENGTH = 4000
_ID = re.compile(r"^[0-9a-f]{16}$")


def _fail(message: str, **received: Any) -> None:
    shown = ", ".join(f"{name}={value!r}" for name, value in received.items())
    raise ValueError(f"{message} Received: {shown}")


@dataclass(frozen=True)
class AssignmentLimits:
    """What a run may use to be ranked; every limit is optional.

    Args:
        backbones: Zoo keys a run may use (empty: any).
        max_trainable_params: Most trainable parameters (None: no limit).
        time_budget_seconds: Longest run, wall clock from start to finished (None: no limit).
    """

    backbones: tuple[str, ...] = ()
    max_trainable_params: int | None = None
    time_budget_seconds: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "backbones", tuple(self.backbones or ()))
        if self.max_trainable_params is not None and self.max_trainable_params < 1:
            _fail("max_trainable_params must be >= 1, or None.", max_trainable_params=self.max_trainable_params)
        if self.time_budget_seconds is not None and self.time_budget_seconds <= 0:
            _fail("time_budget_seconds must be > 0, or None.", time_budget_seconds=self.time_budget_seconds)

    def breaches(self, backbone: str, trainable_params: int | None, seconds: float | None) -> list[str]:
        """Plain-language reasons a run breaks these limits (empty: it keeps them)."""
        found = []
        if self.backbones and backbone not in self.backbones:
            found.append(f"backbone {backbone} is not allowed (allowed: {', '.join(self.backbones)})")
        if self.max_trainable_params is not None and (trainable_params or 0) > self.max_trainable_params:
            found.append(f"{trainable_params:,} trainable parameters, over the limit of "
                         f"{self.max_trainable_params:,}")
        if self.time_budget_seconds is not None and (seconds or 0.0) > self.time_budget_seconds:
            found.append(f"took {seconds:.0f} s, over the time budget of {self.time_budget_seconds:.0f} s")
        return found

    def describe(self) -> str:
        """The limits in one line (``"no limits"`` when there are none)."""
        parts = []
        if self.backbones:
            parts.append(f"backbones: {', '.join(self.backbones)}")
        if self.max_trainable_params is not None:
            parts.append(f"at most {self.max_trainable_params:,} trainable parameters")
        if self.time_budget_seconds is not None:
            parts.append(f"at most {self.time_budget_seconds:.0f} s per run")
        return "; ".join(parts) or "no limits"


@dataclass(frozen=True)
class Assignment:
    """One published assignment (its files are under :func:`assignment_dir`)."""

    assignment_id: str
    title: str
    instructions: str
    limits: AssignmentLimits
    class_names: tuple[str, ...]
    public_images: int
    hidden_images: int
    created: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if not _ID.match(self.assignment_id):
            _fail("assignment_id must be 16 hex digits.", assignment_id=self.assignment_id)
        if not self.title.strip() or len(self.title) > MAX_TITLE_LENGTH:
            _fail(f"title must be 1..{MAX_TITLE_LENGTH} characters.", title=self.title)
        if len(self.instructions) > MAX_INSTRUCTIONS_LENGTH:
            _fail(f"instructions must be at most {MAX_INSTRUCTIONS_LENGTH} characters.",
                  instructions=self.instructions[:40] + "...")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["limits"]["backbones"] = list(self.limits.backbones)
        data["class_names"] = list(self.class_names)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Assignment:
        return cls(**{**data, "limits": AssignmentLimits(**data["limits"])})


def assignments_root(settings: Settings) -> Path:
    """``<home>/assignments``: beside the workspaces, never inside one."""
    return Path(settings.home) / ASSIGNMENTS_FOLDER


def assignment_dir(settings: Settings, assignment_id: str) -> Path:
    """The folder of one assignment (refuses an id that is not one)."""
    if not _ID.match(str(assignment_id)):
        _fail("Not an assignment id.", assignment_id=assignment_id)
    return assignments_root(settings) / assignment_id


def hidden_dataset(settings: Settings, assignment_id: str) -> DatasetSpec:
    """The hidden test images as a data set, for the scoring step in a worker only."""
    from transfer_core.data import load_dataset

    return load_dataset(assignment_dir(settings, assignment_id) / HIDDEN_FOLDER)


def _copy_rows(source_root: Path, frame, dest: Path, spec: DatasetSpec) -> DatasetSpec:
    from transfer_core.data.manifest import write_dataset_json, write_manifest

    dest.mkdir(parents=True)
    for relative in frame["path"]:
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_root / relative, target)
    write_manifest(dest, frame)
    new_spec = dataclasses.replace(spec, root=str(dest.resolve()))
    write_dataset_json(new_spec)
    return new_spec


def publish_assignment(
    settings: Settings,
    source: DatasetSpec,
    title: str,
    instructions: str = "",
    limits: AssignmentLimits | None = None,
    hidden_fraction: float = 0.2,
    seed: int = 0,
) -> Assignment:
    """Publish an assignment from one of the teacher's data sets.

    Args:
        settings: Where ``<home>`` is.
        source: The teacher's data set (every split of it is used).
        title: Shown to students.
        instructions: Shown to students (Markdown).
        limits: What ranked runs may use.
        hidden_fraction: Share of each class's distinct images held out as the hidden test split.
        seed: Which images are held out (by content hash, like the data set split).

    Returns:
        The :class:`Assignment`.

    Raises:
        ValueError: A bad title, fraction or limit, or a class too small to keep images for both sides.
        transfer_core.data.DataError: The source data set cannot be read.
    """
    from transfer_core.data import read_manifest
    from transfer_core.data.split import hash_split

    if not 0.0 < hidden_fraction < 0.9:
        _fail("hidden_fraction must be between 0 and 0.9.", hidden_fraction=hidden_fraction)
    frame = read_manifest(source)
    distinct = frame.drop_duplicates("sha256")
    # One row per content: the hidden split is chosen among distinct images, per class.
    chosen = hash_split(distinct, seed=seed, val_fraction=hidden_fraction, test_fraction=0.0)
    hidden_shas = set(distinct.loc[chosen == "val", "sha256"])
    hidden = frame[frame["sha256"].isin(hidden_shas)].drop_duplicates("sha256").assign(split="test")
    public = frame[~frame["sha256"].isin(hidden_shas)].copy()
    for name in source.class_names:
        if (hidden["label"] == name).sum() < 1 or (public["label"] == name).sum() < 2:
            _fail(f"Class {name!r} needs at least 3 distinct images to hold some out as a hidden test split.",
                  images=int((frame["label"] == name).sum()))
    public["split"] = hash_split(public, seed=source.seed, val_fraction=source.val_fraction, test_fraction=0.0)
    assignment = Assignment(
        assignment_id=secrets.token_hex(8),
        title=title.strip(),
        instructions=instructions.strip(),
        limits=limits or AssignmentLimits(),
        class_names=source.class_names,
        public_images=len(public),
        hidden_images=len(hidden),
        created=time.time(),
    )
    folder = assignment_dir(settings, assignment.assignment_id)
    spec = dataclasses.replace(source, test_fraction=0.0, version=1)  # The copies start as new data sets.
    try:
        _copy_rows(Path(source.root), public.reset_index(drop=True), folder / PUBLIC_FOLDER, spec)
        _copy_rows(Path(source.root), hidden.reset_index(drop=True), folder / HIDDEN_FOLDER, spec)
        (folder / SCORES_FOLDER).mkdir()
        atomic_write_json(folder / ASSIGNMENT_FILE, assignment.to_dict())  # Last: a half-made one is not listed.
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return assignment


def load_assignment(settings: Settings, assignment_id: str) -> Assignment | None:
    """The assignment ``assignment_id``, or None when there is none (or it cannot be read)."""
    try:
        data = json.loads((assignment_dir(settings, assignment_id) / ASSIGNMENT_FILE).read_text(encoding="utf-8"))
        return Assignment.from_dict(data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def list_assignments(settings: Settings) -> list[Assignment]:
    """Every published assignment, newest first."""
    root = assignments_root(settings)
    try:
        ids = [p.name for p in root.iterdir() if p.is_dir() and _ID.match(p.name)]
    except OSError:
        return []
    found = [a for a in (load_assignment(settings, i) for i in ids) if a is not None]
    return sorted(found, key=lambda a: a.created, reverse=True)


def withdraw_assignment(settings: Settings, assignment_id: str) -> None:
    """Delete an assignment with its hidden images and scores (students keep their copies)."""
    shutil.rmtree(assignment_dir(settings, assignment_id), ignore_errors=True)


def start_assignment(settings: Settings, assignment: Assignment, datasets_dir: Path) -> DatasetSpec:
    """Copy the assignment's public data (never the hidden test images) into a student's workspace.

    Args:
        settings: Where ``<home>`` is.
        assignment: The assignment to start.
        datasets_dir: The student's ``<workspace>/datasets`` folder.

    Returns:
        The student's copy, marked with the assignment's id.
    """
    from transfer_core.data import load_dataset
    from transfer_core.data.manifest import write_dataset_json

    source = assignment_dir(settings, assignment.assignment_id) / PUBLIC_FOLDER
    slug = re.sub(r"[^a-z0-9-]+", "-", assignment.title.lower()).strip("-")[:40] or "assignment"
    dest = Path(datasets_dir) / f"{slug}-{secrets.token_hex(3)}"
    shutil.copytree(source, dest)
    spec = dataclasses.replace(load_dataset(dest), root=str(dest.resolve()))
    write_dataset_json(spec)
    atomic_write_json(dest / MARKER_FILE, {"assignment_id": assignment.assignment_id})
    return spec


def assignment_of_dataset(root: str | Path) -> str | None:
    """The id of the assignment a data set was started from, or None."""
    try:
        value = json.loads((Path(root) / MARKER_FILE).read_text(encoding="utf-8")).get("assignment_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and _ID.match(value) else None


def assignment_of_run(config: RunConfig) -> str | None:
    """The assignment a run counts for (its data set was started from one), or None."""
    return assignment_of_dataset(config.dataset.root)
