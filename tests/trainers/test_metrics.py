"""Metrics against scikit-learn, which computes them independently (a dev-only dependency)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from trainers.metrics import (
    accuracy,
    binary_average_precision,
    binary_roc_auc,
    macro_f1,
    macro_pr_auc,
    macro_roc_auc,
    task_metrics,
)


def _multilabel_case(seed: int, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return (targets, scores) where every column has positives and negatives."""
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(8, 80)), int(rng.integers(1, 7))
    y = (rng.random((n, k)) < 0.35).astype(np.float32)
    y[0], y[1] = 1.0, 0.0  # both classes in every column
    scores = rng.integers(0, 4, (n, k)).astype(float) if tied else rng.normal(size=(n, k))
    return y, scores


@pytest.mark.parametrize("tied", [False, True], ids=["distinct", "tied-scores"])
@pytest.mark.parametrize("seed", range(12))
def test_macro_roc_auc_and_pr_auc_equal_sklearn(seed: int, tied: bool) -> None:
    y, scores = _multilabel_case(seed, tied)
    assert macro_roc_auc(y, scores) == pytest.approx(
        roc_auc_score(y, scores, average="macro"), abs=1e-12
    )
    assert macro_pr_auc(y, scores) == pytest.approx(
        average_precision_score(y, scores, average="macro"), abs=1e-12
    )


def test_task_metrics_multi_label_uses_logits_as_scores() -> None:
    y, logits = _multilabel_case(3, tied=False)
    logits = logits * 30  # saturated sigmoids would tie; the logits keep their order
    got = task_metrics("multi_label", y, logits)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, logits, average="macro"), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(
        average_precision_score(y, logits, average="macro"), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(10))
def test_macro_f1_and_accuracy_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    y_true = rng.integers(0, 6, n)
    y_pred = rng.integers(0, 8, n)  # predictions may name classes absent from the targets
    assert macro_f1(y_true, y_pred) == pytest.approx(
        f1_score(y_true, y_pred, average="macro"), abs=1e-12
    )
    assert accuracy(y_true, y_pred) == pytest.approx(float(np.mean(y_true == y_pred)))


def test_task_metrics_single_label_takes_the_argmax() -> None:
    logits = np.array([[2.0, 0.1, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [4.0, 0.0, 0.0]])
    targets = np.array([0, 1, 1, 0])
    got = task_metrics("single_label", targets, logits)
    assert got["accuracy"] == pytest.approx(0.75)
    assert got["macro_f1"] == pytest.approx(f1_score(targets, [0, 1, 2, 0], average="macro"))


def test_columns_without_both_classes_are_skipped() -> None:
    y = np.array([[1, 1], [0, 1], [1, 1], [0, 1]], dtype=np.float32)  # column 1: all positive
    scores = np.array([[0.9, 0.1], [0.2, 0.4], [0.8, 0.3], [0.1, 0.2]])
    assert math.isnan(binary_roc_auc(y[:, 1], scores[:, 1]))
    assert macro_roc_auc(y, scores) == pytest.approx(roc_auc_score(y[:, 0], scores[:, 0]))
    assert math.isnan(binary_average_precision(np.zeros(4), scores[:, 0]))
    assert math.isnan(macro_roc_auc(np.ones((3, 2)), np.zeros((3, 2))))


def test_perfect_and_reversed_rankings() -> None:
    y = np.array([0, 0, 1, 1])
    assert binary_roc_auc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert binary_roc_auc(y, np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert binary_average_precision(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
