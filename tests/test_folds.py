"""Fold rule (docs/datasets.md): sorted subject IDs, index k -> fold k mod 10."""
from __future__ import annotations

import pandas as pd
import pytest

from fersnet.data.folds import assign_folds, check_disjoint, split
from fersnet.errors import DataError


def test_subjects_sorted_ascending_go_round_robin():
    folds = assign_folds(["S010", "S005", "S501", "S022"], n_folds=3)
    assert folds == {"S005": 0, "S010": 1, "S022": 2, "S501": 0}


def test_every_subject_in_exactly_one_fold():
    subs = [f"P{i:03d}" for i in range(1, 81)]
    folds = assign_folds(subs + subs, 10)
    assert len(folds) == 80 and sorted(set(folds.values())) == list(range(10))
    assert all(list(folds.values()).count(k) == 8 for k in range(10))


def test_split_refuses_a_subject_on_both_sides():
    meta = pd.DataFrame({"subject": ["S1", "S1", "S2"], "fold": [0, 1, 1]})
    with pytest.raises(DataError, match="S1"):
        split(meta, 0)


def test_check_disjoint_passes_for_disjoint_sets():
    check_disjoint(["S1", "S2"], ["S3"])
