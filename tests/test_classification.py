"""Classification metrics of a fold (fersnet.training.classification) and mean/std over folds
(fersnet.metrics.fold_stats), on hand-made cases worked out by hand and checked against scikit-learn."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from fersnet.metrics.fold_stats import STD_DDOF, mean_std
from fersnet.training.classification import classification_metrics, labels_from_confusion

CLASSES = ["anger", "happy", "sadness", "surprise", "fear"]
# 9 test faces: anger 3 (1 right), happy 2 (2 right), sadness 4 (2 right);
# surprise is predicted twice but absent from the fold; fear is neither present nor predicted.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 1, 3, 1, 1, 2, 0, 2, 3]


def test_fold_metrics_match_the_hand_computed_values_and_scikit_learn():
    m = classification_metrics(Y_TRUE, Y_PRED, CLASSES)
    assert m["accuracy"] == pytest.approx(5 / 9)
    assert m["per_class_recall"] == pytest.approx({"anger": 1 / 3, "happy": 1.0, "sadness": 0.5,
                                                   "surprise": None, "fear": None})
    # mean recall over the 3 classes present in the fold
    assert m["balanced_accuracy"] == pytest.approx((1 / 3 + 1 + 1 / 2) / 3)
    # F1 per class: anger 2*1/(2*1+1+2) = 0.4, happy 2*2/(4+1) = 0.8, sadness 2*2/(4+0+2) = 2/3,
    # surprise (predicted, absent) 0; fear (neither) not counted
    assert m["macro_f1"] == pytest.approx((0.4 + 0.8 + 2 / 3 + 0.0) / 4)
    assert m["confusion"] == [[1, 1, 0, 1, 0], [0, 2, 0, 0, 0], [1, 0, 2, 1, 0], [0] * 5, [0] * 5]

    assert m["accuracy"] == pytest.approx(skm.accuracy_score(Y_TRUE, Y_PRED))
    with pytest.warns(UserWarning, match="classes not in y_true"):     # surprise: predicted, absent
        assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(Y_TRUE, Y_PRED))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED, average="macro"))
    assert m["confusion"] == skm.confusion_matrix(Y_TRUE, Y_PRED, labels=range(5)).tolist()


def test_a_perfect_fold_scores_one_on_every_metric():
    m = classification_metrics([0, 1, 2, 2], [0, 1, 2, 2], CLASSES[:3])
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == 1.0


def test_labels_from_a_confusion_matrix_give_back_the_same_metrics():
    m = classification_metrics(Y_TRUE, Y_PRED, CLASSES)
    again = classification_metrics(*labels_from_confusion(m["confusion"]), CLASSES)
    assert again == m


def test_mean_std_over_folds_is_the_sample_std_and_skips_missing_folds():
    s = mean_std([0.5, None, 0.7, math.nan, 0.9])
    assert STD_DDOF == 1
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.7)
    assert s["std"] == pytest.approx(np.std([0.5, 0.7, 0.9], ddof=1)) == pytest.approx(0.2)


def test_one_fold_has_a_mean_but_no_std_and_no_fold_has_neither():
    one, none = mean_std([0.8]), mean_std([])
    assert one["mean"] == 0.8 and math.isnan(one["std"]) and one["n"] == 1
    assert math.isnan(none["mean"]) and math.isnan(none["std"]) and none["n"] == 0
