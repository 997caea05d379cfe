"""Evaluation from predictions: confusion matrix, per-class metrics, top losses.

Pure NumPy/pandas on (true labels, predicted probabilities), so it is fast to
test and the same code serves the training engine, the pages and the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from transfer_core.report import SplitEvaluation, TopLoss

_EPSILON = 1e-7


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Count matrix with true classes as rows and predicted classes as columns."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    matrix = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def per_class_metrics(matrix: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class from a confusion matrix.

    A class that is never predicted has precision 0 (not NaN), as in
    scikit-learn's ``zero_division=0``.
    """
    true_positives = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    support = matrix.sum(axis=1).astype(float)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return pd.DataFrame(
        {
            "class": list(class_names),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support.astype(int),
        }
    )


def top_losses(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    paths: Sequence[str] | None = None,
    k: int = 12,
) -> list[TopLoss]:
    """The ``k`` images with the highest loss, most confidently wrong first.

    Returns:
        One :class:`~transfer_core.report.TopLoss` per image.
    """
    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    true_probability = probabilities[np.arange(len(y_true)), y_true]
    losses = -np.log(np.clip(true_probability, _EPSILON, 1.0))
    predicted = probabilities.argmax(axis=1)
    order = np.argsort(-losses, kind="stable")[:k]
    return [
        TopLoss(
            index=int(i),
            path=paths[i] if paths is not None else None,
            true=class_names[y_true[i]],
            predicted=class_names[predicted[i]],
            confidence=float(probabilities[i, predicted[i]]),
            true_probability=float(true_probability[i]),
            loss=float(losses[i]),
            correct=bool(predicted[i] == y_true[i]),
        )
        for i in order
    ]


def evaluate_predictions(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    paths: Sequence[str] | None = None,
    top_k: int = 12,
) -> SplitEvaluation:
    """Everything the report shows about one split.

    Args:
        y_true: Integer labels, shape ``(n,)``.
        probabilities: Predicted class probabilities, shape ``(n, num_classes)``.
        class_names: Names in label order.
        paths: Optional image paths, for the top-losses gallery.
        top_k: How many top losses to keep.

    Returns:
        Accuracy, loss (mean cross-entropy), image count, confusion matrix, per-class rows,
        top losses and class names (``SplitEvaluation.to_dict`` is what report.json stores).

    Raises:
        ValueError: If shapes disagree.
    """
    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.ndim != 2 or probabilities.shape[0] != y_true.shape[0]:
        raise ValueError(
            "probabilities must have shape (len(y_true), num_classes). "
            f"Received: probabilities.shape={probabilities.shape}, len(y_true)={len(y_true)}"
        )
    if probabilities.shape[1] != len(class_names):
        raise ValueError(
            "probabilities has one column per class. "
            f"Received: {probabilities.shape[1]} columns for {len(class_names)} classes"
        )
    num_images = int(len(y_true))
    if num_images == 0:
        zeros = np.zeros((len(class_names),) * 2, dtype=int).tolist()
        return SplitEvaluation(confusion_matrix=tuple(map(tuple, zeros)), class_names=tuple(class_names))
    predicted = probabilities.argmax(axis=1)
    true_probability = probabilities[np.arange(num_images), y_true]
    matrix = confusion_matrix(y_true, predicted, len(class_names))
    return SplitEvaluation(
        accuracy=float((predicted == y_true).mean()),
        loss=float(-np.log(np.clip(true_probability, _EPSILON, 1.0)).mean()),
        num_images=num_images,
        confusion_matrix=tuple(map(tuple, matrix.tolist())),
        per_class=tuple(per_class_metrics(matrix, class_names).to_dict(orient="records")),
        top_losses=tuple(top_losses(y_true, probabilities, class_names, paths, k=top_k)),
        class_names=tuple(class_names),
    )
