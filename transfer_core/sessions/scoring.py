"""Score a finished run on its assignment's hidden test split, in the worker that trained it.

Runs in a training worker (``transfer_core.jobs.runner``, right after the run's report is written),
never in the web server: it reads the hidden test images, which no page may touch, and runs the model.
It writes one :class:`~transfer_core.sessions.leaderboard.AssignmentScore` under the assignment's
folder and nothing into the student's run directory. TensorFlow is imported inside functions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from transfer_core.config import RunConfig, Settings
from transfer_core.sessions.assignments import assignment_of_run, hidden_dataset, load_assignment
from transfer_core.sessions.leaderboard import AssignmentScore, save_score


def _workspace_of(run_dir: Path, settings: Settings) -> str | None:
    """The workspace id of ``<home>/workspaces/<id>/runs/<run>``, or None for a run elsewhere (the CLI's)."""
    run_dir = Path(run_dir).resolve()
    workspaces = Path(settings.workspaces_dir).resolve()
    if run_dir.parent.name != "runs" or run_dir.parent.parent.parent != workspaces:
        return None
    return run_dir.parent.parent.name


def hidden_accuracy(model: Any, settings: Settings, assignment_id: str) -> tuple[float, int]:
    """Accuracy of ``model`` (a classifier taking raw pixels) on the hidden test images.

    Returns:
        ``(accuracy, number of images)``.
    """
    from transfer_core.data import load_split_arrays
    from transfer_core.explore.explain import predict

    spec = hidden_dataset(settings, assignment_id)
    images, labels = load_split_arrays(spec, "test", int(model.inputs[0].shape[1]))
    if len(labels) == 0:
        return 0.0, 0
    predicted = predict(model, images).argmax(axis=1)
    return float(np.mean(predicted == labels)), int(len(labels))


def score_run(run_dir: Path, config: RunConfig, model: Any, report: dict[str, Any],
              settings: Settings) -> AssignmentScore | None:
    """Score a finished run when its data set belongs to an assignment; None when it does not.

    Args:
        run_dir: The run's folder (``<home>/workspaces/<id>/runs/<run>``).
        config: The run's configuration.
        model: The trained classifier (``keras.Model``), still in memory.
        report: The run's report (``trainable_params``, ``seconds``).
        settings: Where ``<home>`` is.
    """
    assignment_id = assignment_of_run(config)
    workspace_id = _workspace_of(run_dir, settings)
    if assignment_id is None or workspace_id is None:
        return None
    assignment = load_assignment(settings, assignment_id)
    if assignment is None:
        return None  # Withdrawn since the student started it.
    trainable = report.get("trainable_params")
    seconds = report.get("seconds")
    broken = assignment.limits.breaches(config.model.backbone, trainable, seconds)
    accuracy: float | None = None
    count = 0
    if tuple(config.dataset.class_names) != assignment.class_names:
        broken.append("the classes differ from the assignment's, so the hidden test images cannot score it")
    else:
        accuracy, count = hidden_accuracy(model, settings, assignment_id)
    score = AssignmentScore(
        assignment_id=assignment_id, workspace_id=workspace_id, run_id=Path(run_dir).name, accuracy=accuracy,
        num_images=count, strategy=config.train.strategy, backbone=config.model.backbone,
        head=config.model.head, trainable_params=trainable, seconds=seconds, broken_limits=tuple(broken),
        scored_at=time.time(),
    )
    save_score(settings, score)
    return score
