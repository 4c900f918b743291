"""The fold rules (params `folds.rule`): sorted subject IDs, index k -> fold k mod n_folds
(`round_robin`, datasets.md §4), or contiguous blocks of ascending IDs (`blocks`, R2021)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest

from fersnet import paths, provenance, workflow
from fersnet.data.folds import _subject_key, assign_folds, check_disjoint, split
from fersnet.data.preprocess import preprocess
from fersnet.errors import DataError, FersnetError
from native_trees import make_ckplus

# datasets.md §4: the public CK+ split's first fold (our fold 0) holds exactly these subjects.
CK_FOLD0 = ["S005", "S035", "S054", "S064", "S074", "S084", "S094", "S106", "S116", "S130", "S147", "S501"]
CK_FOLD_SIZES = [33, 39, 40, 35, 30, 37, 29, 29, 33, 22]     # sequences per fold, 327 in all


def ckplus_like_subjects() -> list[str]:
    """118 CK+-like IDs: the fold-0 subjects at sorted positions 0, 10, ..., 110, nine fillers
    between each pair, then the high IDs S502-S506, S895, S999 that the real list ends with."""
    ids = []
    for lo, hi in zip(CK_FOLD0, CK_FOLD0[1:]):
        a, b = int(lo[1:]), int(hi[1:])
        fillers = [a + round((b - a) * (i + 1) / 10) for i in range(9)]
        ids += [lo] + [f"S{n:03d}" for n in fillers]
    ids += ["S501", "S502", "S503", "S504", "S505", "S506", "S895", "S999"]
    assert len(ids) == len(set(ids)) == 118
    return ids


def ckplus_like_sequences(subjects: list[str]) -> dict[str, int]:
    """Labelled sequences per subject (1-6 each, as in CK+), summing to the public fold sizes."""
    counts = {}
    by_fold = [subjects[k::10] for k in range(10)]
    for members, total in zip(by_fold, CK_FOLD_SIZES):
        base, extra = divmod(total, len(members))
        for i, s in enumerate(members):
            counts[s] = base + (i < extra)
    return counts


def test_ckplus_subject_ids_reproduce_the_public_fold_sizes_and_first_fold():
    subjects = ckplus_like_subjects()
    seqs = ckplus_like_sequences(subjects)
    shuffled = subjects[::-1][::3] + subjects[::-1][1::3] + subjects[::-1][2::3]   # order must not matter
    folds = assign_folds(shuffled, 10)
    assert sorted((s for s, f in folds.items() if f == 0), key=lambda s: int(s[1:])) == CK_FOLD0
    sizes = [sum(seqs[s] for s, f in folds.items() if f == k) for k in range(10)]
    assert sizes == CK_FOLD_SIZES and sum(sizes) == 327
    assert [sum(f == k for f in folds.values()) for k in range(10)] == [12] * 8 + [11] * 2


def test_subject_ids_sort_as_numbers_even_with_unequal_widths():
    folds = assign_folds(["S10", "S9", "S100", "S011"], n_folds=2)
    assert folds == {"S9": 0, "S10": 1, "S011": 0, "S100": 1}


def test_oulu_subjects_fill_each_of_ten_folds_with_eight():
    folds = assign_folds([f"P{i:03d}" for i in range(80, 0, -1)], 10)
    assert [sum(f == k for f in folds.values()) for k in range(10)] == [8] * 10
    assert [s for s, f in sorted(folds.items()) if f == 0] == [f"P{i:03d}" for i in range(1, 80, 10)]


def test_no_subject_lands_in_two_folds_and_split_is_subject_disjoint():
    subjects = ckplus_like_subjects()
    folds = assign_folds(subjects + subjects[:5], 10)   # repeated IDs keep one fold
    meta = pd.DataFrame({"subject": subjects * 2, "fold": [folds[s] for s in subjects] * 2})
    for k in range(10):
        train, test = split(meta, k, 10)
        assert not set(meta.subject[train]) & set(meta.subject[test])
        assert len(train) + len(test) == len(meta)


def test_split_raises_when_a_subject_is_on_both_sides():
    meta = pd.DataFrame({"subject": ["S005", "S005", "S010"], "fold": [0, 1, 1]})
    with pytest.raises(DataError, match="S005.*both training and test"):
        split(meta, 0, 2)


def test_check_disjoint_names_the_shared_subject():
    with pytest.raises(DataError, match="S501"):
        check_disjoint(["S005", "S501"], ["S501", "S999"])
    check_disjoint(["S005"], ["S999"])


def test_split_refuses_an_empty_or_out_of_range_fold():
    meta = pd.DataFrame({"subject": ["S005", "S010"], "fold": [0, 1]})
    with pytest.raises(DataError, match="no test images"):
        split(meta, 2)
    with pytest.raises(DataError, match="out of range"):
        split(meta, 5, 2)


# folds.rule
def test_round_robin_is_the_default_and_unchanged():
    subjects = ckplus_like_subjects()
    shuffled = subjects[::-1][::2] + subjects[::-1][1::2]
    ordered = sorted(subjects, key=_subject_key)
    expected = {s: k % 10 for k, s in enumerate(ordered)}
    assert assign_folds(shuffled, 10) == assign_folds(shuffled, 10, "round_robin") == expected


def test_blocks_gives_contiguous_blocks_of_ascending_subject_ids_as_r2021():
    # R2021 (paper.md §3): fold k takes sorted subjects [k q, (k + 1) q), q = floor(N / 10), and
    # the last fold the remainder: 118 CK+ subjects -> 9 folds of 11 and a last fold of 19.
    subjects = ckplus_like_subjects()
    shuffled = subjects[::-1][::3] + subjects[::-1][1::3] + subjects[::-1][2::3]
    folds = assign_folds(shuffled, 10, "blocks")
    ordered = sorted(subjects, key=lambda s: int(s[1:]))
    assert [folds[s] for s in ordered] == sorted(folds.values())           # ascending IDs, ascending folds
    for k in range(9):
        assert [s for s in ordered if folds[s] == k] == ordered[11 * k:11 * (k + 1)]
    assert [s for s in ordered if folds[s] == 9] == ordered[99:]
    assert [sum(f == k for f in folds.values()) for k in range(10)] == [11] * 9 + [19]
    assert folds != assign_folds(shuffled, 10)                             # not the round-robin split


def test_blocks_with_fewer_subjects_than_folds_gives_each_its_own_fold():
    assert assign_folds(["S3", "S1", "S2"], 5, "blocks") == {"S1": 0, "S2": 1, "S3": 2}


def test_an_unknown_rule_is_refused_naming_the_key():
    with pytest.raises(DataError, match="folds.rule"):
        assign_folds(["S1", "S2"], 2, "random")


def test_the_fold_rule_cuts_the_processed_data_and_is_part_of_its_provenance(test_cfg, tmp_path):
    root = make_ckplus(tmp_path / "raw" / "ck", {("S005", "001"): 3, ("S010", "001"): 5, ("S011", "002"): 7})
    cfg = copy.deepcopy(test_cfg)
    cfg["n_folds"], cfg["data"]["ckplus"]["root"] = 2, str(root)
    out = paths.processed_dir(cfg, "ckplus")
    by_rule = {}
    for rule in ("round_robin", "blocks"):
        cfg["folds"]["rule"] = rule
        preprocess(cfg, "ckplus", root=root)
        meta = pd.read_csv(out / paths.META)
        by_rule[rule] = meta.groupby("subject").fold.first().to_dict()
        protocol = json.loads((out / paths.PREP_SUMMARY).read_text())["protocol"]
        assert protocol["folds_rule"] == rule
        assert provenance.data_state(cfg, "ckplus")                     # made with today's settings
    assert by_rule == {"round_robin": {"S005": 0, "S010": 1, "S011": 0},
                       "blocks": {"S005": 0, "S010": 1, "S011": 1}}
    # data cut by one rule is not used under the other: every job's fingerprint reads data_state
    other = copy.deepcopy(cfg)
    other["folds"]["rule"] = "round_robin"
    with pytest.raises(FersnetError, match="folds.rule: 'blocks' -> 'round_robin'"):
        provenance.data_state(other, "ckplus")
    # and the workflow re-runs preprocess when the rule changes
    assert workflow.preprocess_params(cfg, "ckplus") != workflow.preprocess_params(other, "ckplus")
