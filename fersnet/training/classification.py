"""Classification metrics of one fold's test predictions, computed by scikit-learn.

One function for every classifier the benchmark evaluates (the FER branch of a training job,
the judge), so that `metrics.json` means the same thing everywhere. CK+, Oulu-CASIA and MMI are
imbalanced (CK+ has 83 surprise but 18 contempt sequences), and a small test fold may miss a class
altogether, so accuracy alone flatters a model that favours the large classes:

- `balanced_accuracy`: the mean of the per-class recalls over the classes present in the fold's
  test labels (scikit-learn's `balanced_accuracy_score`);
- `macro_f1`: the unweighted mean F1 over the classes that occur in the test labels or the
  predictions (scikit-learn's default label set; a class predicted but absent scores F1 = 0).
"""
from __future__ import annotations

import warnings

import numpy as np


def classification_metrics(y_true, y_pred, classes: list[str]) -> dict:
    """accuracy, balanced_accuracy, macro_f1 (fractions), per_class_recall and confusion of integer labels.

    `confusion` has rows = true class and columns = predicted class, over all `classes` (label i
    is classes[i]); `per_class_recall` is None for a class without test samples.
    """
    from sklearn import metrics

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    labels = list(range(len(classes)))
    confusion = metrics.confusion_matrix(y_true, y_pred, labels=labels)
    support = confusion.sum(axis=1)
    recall = metrics.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true": expected in small folds, and documented above
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = metrics.balanced_accuracy_score(y_true, y_pred)
    return {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(metrics.f1_score(y_true, y_pred, average="macro", zero_division=0.0)),
        "per_class_recall": {c: (float(recall[i]) if support[i] else None) for i, c in enumerate(classes)},
        "confusion": confusion.tolist(),
    }


def labels_from_confusion(confusion) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) with one pair per count of a confusion matrix (rows true, columns predicted).

    Lets results written before `balanced_accuracy`/`macro_f1` existed get them from their
    confusion matrix through the same `classification_metrics`.
    """
    cm = np.asarray(confusion, dtype=np.int64)
    true, pred = np.nonzero(cm)
    counts = cm[true, pred]
    return np.repeat(true, counts), np.repeat(pred, counts)
