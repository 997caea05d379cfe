"""Evaluation from predictions, checked against hand-computed numbers and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

from transfer_core.metrics import evaluate_predictions, top_losses


def test_confusion_matrix_and_per_class_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, size=60)
    probabilities = rng.dirichlet(np.ones(3), size=60)
    result = evaluate_predictions(y_true, probabilities, ["a", "b", "c"])
    predicted = probabilities.argmax(1)
    np.testing.assert_array_equal(result.confusion_matrix, sk_confusion_matrix(y_true, predicted))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, predicted, zero_division=0)
    np.testing.assert_allclose([r["precision"] for r in result.per_class], precision)
    np.testing.assert_allclose([r["recall"] for r in result.per_class], recall)
    np.testing.assert_allclose([r["f1"] for r in result.per_class], f1)
    assert [r["support"] for r in result.per_class] == support.tolist()
    assert result.accuracy == pytest.approx((predicted == y_true).mean())


def test_loss_is_mean_cross_entropy():
    y_true = np.array([0, 1])
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8]])
    result = evaluate_predictions(y_true, probabilities, ["a", "b"])
    assert result.loss == pytest.approx(-(np.log(0.9) + np.log(0.8)) / 2)


def test_top_losses_lists_most_confidently_wrong_first():
    y_true = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.01, 0.99], [0.95, 0.05]])
    losses = top_losses(y_true, probabilities, ["ant", "bee"], paths=["p0", "p1", "p2", "p3"], k=2)
    assert [item.path for item in losses] == ["p3", "p1"]
    assert losses[0].true == "bee" and losses[0].predicted == "ant"
    assert losses[0].confidence == pytest.approx(0.95)
    assert not losses[0].correct


def test_class_never_predicted_has_zero_precision_not_nan():
    result = evaluate_predictions(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]), ["a", "b"])
    assert result.per_class[1]["precision"] == 0.0


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="Received"):
        evaluate_predictions(np.array([0, 1, 0]), np.ones((2, 2)) / 2, ["a", "b"])
