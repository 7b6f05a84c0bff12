"""Classification metrics in plain numpy: accuracy, macro-F1, macro ROC-AUC and macro PR-AUC.

They follow scikit-learn's definitions (which the tests compare against) without depending on it:

* ``macro_f1`` averages the F1 of every class that occurs in the targets or the predictions;
* ``macro_roc_auc`` is the Mann-Whitney statistic with average ranks for tied scores;
* ``macro_pr_auc`` is average precision, ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds.

A class whose column holds only positives or only negatives has no ROC-AUC (and, without
positives, no average precision); the macro averages skip such classes instead of failing, and
are NaN when no class is left.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from trainers.featureset import Task

PRIMARY_METRIC: Final[dict[Task, str]] = {"single_label": "accuracy", "multi_label": "roc_auc"}
"""The metric early stopping and searches maximise, per task (``val_``/``test_`` prefixed)."""

METRIC_NAMES: Final[dict[Task, tuple[str, ...]]] = {
    "single_label": ("accuracy", "macro_f1"),
    "multi_label": ("roc_auc", "pr_auc"),
}
"""The metrics ``fit`` reports for each task (higher is better for all of them)."""

PITCH_ROBUSTNESS_METRIC: Final = "val_pitch_robustness"
"""The primary metric averaged over the study's pitch-shifted valid splits (data.pitch_shifts)."""


def pitch_shift_metric_key(semitones: float, metric: str) -> str:
    """Return the name of ``metric`` on the valid split shifted by ``semitones``:
    ``val_pitch_m2_accuracy`` for -2, ``val_pitch_p2_accuracy`` for +2 (MLflow keys have no +)."""
    sign = "m" if semitones < 0 else "p"
    return f"val_pitch_{sign}{abs(semitones):g}_{metric}"


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Return the fraction of samples whose predicted class index equals the target."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.size == 0:
        return float("nan")
    return float(np.mean(y_true == y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Return the unweighted mean F1 over the classes present in ``y_true`` or ``y_pred``."""
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    classes = np.union1d(y_true, y_pred)
    if classes.size == 0:
        return float("nan")
    scores = []
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        denominator = 2 * tp + fp + fn
        scores.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Return 1-based ranks of ``values``, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # start index of each run of equal values
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    run_ranks = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks


def binary_roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Return the ROC-AUC of one binary column (NaN when it has only one class)."""
    positive = np.asarray(y_true).ravel() > 0.5
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Return the average precision (PR-AUC) of one binary column (NaN without positives)."""
    positive = np.asarray(y_true).ravel() > 0.5
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    hits = positive[order].astype(np.float64)
    # one operating point per distinct threshold: the last index of each run of equal scores
    last = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    tp = np.cumsum(hits)[last]
    predicted = last + 1.0
    precision = tp / predicted
    recall = tp / n_pos
    recall_steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_steps * precision))


def _macro(per_class: list[float]) -> float:
    defined = [v for v in per_class if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def macro_roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Return the mean ROC-AUC over the label columns of a (N, K) multi-hot target.

    Columns with only one class are skipped (scikit-learn raises for them instead).
    """
    y_true = np.atleast_2d(np.asarray(y_true))
    scores = np.atleast_2d(np.asarray(scores))
    return _macro([binary_roc_auc(y_true[:, k], scores[:, k]) for k in range(y_true.shape[1])])


def macro_pr_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Return the mean average precision over the label columns of a (N, K) multi-hot target.

    Columns without positives are skipped.
    """
    y_true = np.atleast_2d(np.asarray(y_true))
    scores = np.atleast_2d(np.asarray(scores))
    return _macro(
        [binary_average_precision(y_true[:, k], scores[:, k]) for k in range(y_true.shape[1])]
    )


def task_metrics(task: Task, targets: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Return the task's metrics (see ``METRIC_NAMES``) from targets and raw model outputs.

    Single-label: ``targets`` are (N,) class indices and ``logits`` (N, K); the prediction is the
    arg-max. Multi-label: ``targets`` are (N, K) multi-hot and the logits are the scores (both
    metrics depend only on the order of the scores, and a sigmoid would tie saturated logits).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if task == "single_label":
        predictions = logits.argmax(axis=1)
        return {
            "accuracy": accuracy(targets, predictions),
            "macro_f1": macro_f1(targets, predictions),
        }
    return {"roc_auc": macro_roc_auc(targets, logits), "pr_auc": macro_pr_auc(targets, logits)}
