"""Subject-independent folds (docs/datasets/ckplus.md, "folds"; params `folds.rule`).

Both rules sort the subject IDs ascending (numeric parts as numbers) and differ in how they
cut the sorted list into `n_folds` folds:

- `round_robin` (default): the subject at sorted index k goes to fold k mod n. For CK+ this
  reproduces the public 10-fold split (33/39/40/35/30/37/29/29/33/22 sequences).
- `blocks` (R2021, the authors' released code): contiguous blocks of q = floor(N / n) subjects,
  fold k (k < n - 1) takes sorted indices [k q, (k + 1) q) and the last fold the remainder.
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


RULES = ("round_robin", "blocks")
# what each rule does, in words (recorded in the processed data's summary.json and report.md)
RULE_TEXT = {"round_robin": "sorted subject IDs; index k -> fold k mod n_folds",
             "blocks": "sorted subject IDs; contiguous blocks of floor(N / n_folds), the last fold takes the rest (R2021)"}


def assign_folds(subjects: Iterable[str], n_folds: int = 10, rule: str = "round_robin") -> dict[str, int]:
    """Map each distinct subject ID to its fold by `rule` (`round_robin` or `blocks`)."""
    if rule not in RULES:
        raise DataError(f"params: `folds.rule` is {rule!r}; allowed: {', '.join(RULES)}")
    ordered = sorted(set(map(str, subjects)), key=_subject_key)
    if rule == "round_robin":
        return {s: k % n_folds for k, s in enumerate(ordered)}
    # R2021: fold k takes [k q, (k + 1) q), the last fold everything from (n - 1) q on. With fewer
    # subjects than folds (q = 0) each subject gets its own fold, as round-robin gives.
    q = max(1, len(ordered) // n_folds)
    return {s: min(k // q, n_folds - 1) for k, s in enumerate(ordered)}


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
