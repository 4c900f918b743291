"""Subject-independent folds (docs/datasets.md, "Fold rule").

Sort subject IDs ascending; the subject at sorted index k goes to fold k mod n. For CK+
this reproduces the public 10-fold split (33/39/40/35/30/37/29/29/33/22 sequences).
"""
from __future__ import annotations

import re
from typing import Iterable

import numpy as np

from fersnet.errors import DataError


def _subject_key(s: str):
    # S005 < S010 < S501; P001..P080; numeric parts compare as numbers so that
    # IDs of unequal width still sort as the numbers they are.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def assign_folds(subjects: Iterable[str], n_folds: int = 10) -> dict[str, int]:
    """Map each distinct subject ID to its fold."""
    ordered = sorted(set(map(str, subjects)), key=_subject_key)
    return {s: k % n_folds for k, s in enumerate(ordered)}


def split(meta, fold: int, n_folds: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, test) of a fold; raises if any subject is on both sides."""
    folds = meta["fold"].to_numpy()
    if n_folds is not None and not 0 <= fold < n_folds:
        raise DataError(f"fold {fold} out of range 0..{n_folds - 1}")
    test = np.flatnonzero(folds == fold)
    train = np.flatnonzero(folds != fold)
    if len(test) == 0:
        raise DataError(f"fold {fold} has no test images")
    check_disjoint(meta["subject"].to_numpy()[train], meta["subject"].to_numpy()[test])
    return train, test


def check_disjoint(train_subjects, test_subjects) -> None:
    """Refuse to train and test on one subject (the protocol is subject-independent)."""
    both = set(map(str, train_subjects)) & set(map(str, test_subjects))
    if both:
        raise DataError(f"subject(s) {sorted(both)[:5]} appear in both training and test sets; "
                        "folds must be subject-independent")
