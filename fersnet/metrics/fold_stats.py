"""Mean and standard deviation of a metric over folds (and training seeds): the one definition
every table, MLflow parent run and `fersnet compare` uses.

The std is the sample standard deviation, ddof=1 (pandas' default, numpy's is 0), stated
explicitly: the folds are a sample of the possible subject splits. One fold has no spread, so
its std is NaN (shown as the value alone), never 0.
"""
from __future__ import annotations

import math

import pandas as pd

STD_DDOF = 1


def mean_std(values) -> dict:
    """{"mean", "std" (ddof=1), "n"} of the finite values; None, NaN and infinities are left out.

    With no value the mean is NaN; with fewer than two the std is NaN.
    """
    s = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").astype(float)
    s = s[s.map(math.isfinite)]
    n = int(s.size)
    return {"mean": float(s.mean()) if n else math.nan,
            "std": float(s.std(ddof=STD_DDOF)) if n > STD_DDOF else math.nan,
            "n": n}


def run_stats(values: dict) -> dict:
    """Statistics of runs over folds and seeds, `values`: (fold, seed) -> value (non-finite left out).

    - `mean`: over all the runs;
    - `std`, the fold spread: mean_std over folds of each fold's mean over its seeds (with one seed,
      the std over folds of the runs; NaN below two folds);
    - `seed_std`, the seed spread: mean_std over seeds of each seed's mean over its folds, how much
      the mean moves with the training seed; None below two seeds (never 0);
    - `n` = `n_runs`, `n_folds`, `n_seeds` (with at least one usable run), and `per_seed`
      (seed -> mean over its folds).
    """
    kept = {}
    for key, v in values.items():
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            kept[key] = v
    per_fold, per_seed = group_means(kept, 0), group_means(kept, 1)
    seeds = mean_std(per_seed.values())
    return {"mean": mean_std(kept.values())["mean"], "std": mean_std(per_fold.values())["std"],
            "seed_std": seeds["std"] if seeds["n"] >= 2 else None,
            "n": len(kept), "n_runs": len(kept), "n_folds": len(per_fold), "n_seeds": len(per_seed),
            "per_seed": per_seed}


def group_means(values: dict, position: int) -> dict:
    """Mean of `values` ((fold, seed) -> value) per fold (position 0) or per seed (position 1)."""
    groups: dict = {}
    for key, v in values.items():
        groups.setdefault(key[position], []).append(v)
    return {g: sum(vs) / len(vs) for g, vs in sorted(groups.items())}
