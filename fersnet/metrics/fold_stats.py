"""Mean and standard deviation of a metric over folds: the one definition every table, MLflow
parent run and `fersnet compare` uses.

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
