"""Scores of runs on an assignment's hidden test split, the class leaderboard and a student's standing.

A worker writes one :class:`AssignmentScore` per finished run on an assignment
(``transfer_core.sessions.scoring``) to ``<home>/assignments/<id>/scores/``; this module only reads
them. A score holds numbers and the run's settings, never an image name. Each student's best run that
keeps the limits is ranked; a run that breaks one is listed as such and not ranked.

No Streamlit, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from transfer_core.config import Settings
from transfer_core.fileio import atomic_write_json
from transfer_core.sessions.assignments import SCORES_FOLDER, assignment_dir
from transfer_core.sessions.classroom import read_nickname

LEADERBOARD_COLUMNS = ["rank", "nickname", "score", "strategy", "backbone", "trainable_params", "seconds",
                       "runs", "run_id"]
UNRANKED_COLUMNS = ["nickname", "score", "strategy", "backbone", "trainable_params", "seconds", "broken_limits",
                    "run_id"]
SORT_COLUMNS = {"score": False, "trainable_params": True, "seconds": True, "nickname": True}


@dataclass(frozen=True)
class AssignmentScore:
    """One run's result on an assignment's hidden test split.

    Args:
        assignment_id: The assignment.
        workspace_id: The student's session.
        run_id: The run.
        accuracy: Share of hidden test images the run's model classified right (None: not scorable).
        num_images: How many hidden test images there were.
        strategy: The run's strategy.
        backbone: The run's backbone.
        head: The run's head pooling.
        trainable_params: What the run trained.
        seconds: The run's wall-clock time.
        broken_limits: Why the run is not ranked (empty: ranked).
        scored_at: When the worker scored it (seconds since the epoch).
    """

    assignment_id: str
    workspace_id: str
    run_id: str
    accuracy: float | None
    num_images: int
    strategy: str
    backbone: str
    head: str
    trainable_params: int | None
    seconds: float | None
    broken_limits: tuple[str, ...] = ()
    scored_at: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "broken_limits", tuple(self.broken_limits))

    @property
    def ranked(self) -> bool:
        return not self.broken_limits and self.accuracy is not None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["broken_limits"] = list(self.broken_limits)
        return data


def score_path(settings: Settings, score: AssignmentScore) -> Path:
    return assignment_dir(settings, score.assignment_id) / SCORES_FOLDER / f"{score.workspace_id}-{score.run_id}.json"


def save_score(settings: Settings, score: AssignmentScore) -> Path:
    """Write a score atomically (the worker's last step)."""
    path = score_path(settings, score)
    atomic_write_json(path, score.to_dict())
    return path


def read_scores(settings: Settings, assignment_id: str) -> list[AssignmentScore]:
    """Every score of one assignment (unreadable files are left out)."""
    folder = assignment_dir(settings, assignment_id) / SCORES_FOLDER
    try:
        files = sorted(folder.glob("*.json"))
    except OSError:
        return []
    found = []
    for path in files:
        try:
            found.append(AssignmentScore(**json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError):
            continue
    return found


def _best_per_student(scores: list[AssignmentScore]) -> list[tuple[AssignmentScore, int]]:
    """Each student's best ranked run (higher accuracy, then fewer seconds) and their number of ranked runs."""
    best: dict[str, AssignmentScore] = {}
    counts: dict[str, int] = {}
    for score in scores:
        if not score.ranked:
            continue
        counts[score.workspace_id] = counts.get(score.workspace_id, 0) + 1
        current = best.get(score.workspace_id)
        if current is None or (score.accuracy, -(score.seconds or 0.0)) > (current.accuracy, -(current.seconds or 0.0)):
            best[score.workspace_id] = score
    ordered = sorted(best.values(), key=lambda s: (-(s.accuracy or 0.0), s.seconds or 0.0, s.scored_at))
    return [(score, counts[score.workspace_id]) for score in ordered]


def _nickname(settings: Settings, workspace_id: str) -> str:
    return read_nickname(Path(settings.workspaces_dir) / workspace_id) or "(no nickname)"


def leaderboard(settings: Settings, assignment_id: str, sort_by: str = "score") -> pd.DataFrame:
    """The class leaderboard (teacher only): each student's best ranked run, with :data:`LEADERBOARD_COLUMNS`.

    Args:
        settings: Where ``<home>`` is.
        assignment_id: The assignment.
        sort_by: A key of :data:`SORT_COLUMNS`; ``rank`` always follows the score.

    Raises:
        ValueError: Unknown sort column.
    """
    if sort_by not in SORT_COLUMNS:
        raise ValueError(f"sort_by must be one of {sorted(SORT_COLUMNS)}. Received: sort_by={sort_by!r}")
    rows = [
        {"rank": rank, "nickname": _nickname(settings, score.workspace_id), "score": score.accuracy,
         "strategy": score.strategy, "backbone": score.backbone, "trainable_params": score.trainable_params,
         "seconds": score.seconds, "runs": runs, "run_id": score.run_id}
        for rank, (score, runs) in enumerate(_best_per_student(read_scores(settings, assignment_id)), start=1)
    ]
    frame = pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS)
    return frame.sort_values(sort_by, ascending=SORT_COLUMNS[sort_by], kind="stable").reset_index(drop=True)


def unranked_runs(settings: Settings, assignment_id: str) -> pd.DataFrame:
    """Runs that broke a limit (teacher only), with :data:`UNRANKED_COLUMNS`."""
    rows = [
        {"nickname": _nickname(settings, s.workspace_id), "score": s.accuracy, "strategy": s.strategy,
         "backbone": s.backbone, "trainable_params": s.trainable_params, "seconds": s.seconds,
         "broken_limits": "; ".join(s.broken_limits) or "not scorable", "run_id": s.run_id}
        for s in read_scores(settings, assignment_id) if not s.ranked
    ]
    return pd.DataFrame(rows, columns=UNRANKED_COLUMNS)


@dataclass(frozen=True)
class Standing:
    """What one student sees of an assignment: their own runs' scores and their rank, nothing of others'.

    Args:
        own_scores: This student's scored runs, newest first.
        best: Their best ranked run (None: none ranked yet).
        rank: Their place among the students with a ranked run (None: not ranked).
        students_ranked: How many students have a ranked run.
    """

    own_scores: tuple[AssignmentScore, ...]
    best: AssignmentScore | None
    rank: int | None
    students_ranked: int


def standing(settings: Settings, assignment_id: str, workspace_id: str) -> Standing:
    """One student's scores and rank on an assignment."""
    scores = read_scores(settings, assignment_id)
    board = _best_per_student(scores)
    own = tuple(sorted((s for s in scores if s.workspace_id == workspace_id), key=lambda s: s.scored_at,
                       reverse=True))
    for rank, (score, _) in enumerate(board, start=1):
        if score.workspace_id == workspace_id:
            return Standing(own, score, rank, len(board))
    return Standing(own, None, None, len(board))
