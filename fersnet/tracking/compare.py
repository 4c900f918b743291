"""`fersnet compare`: models per database from MLflow, mean +- std over the logged (seed, fold) runs.

Reads the fold runs (tag kind=fold, one per seed and fold) that `fersnet track` / the jobs wrote,
as one pandas frame per database (`mlflow.search_runs(output_format="pandas")`: a column per
`metrics.*` and `tags.*`); rows are grouped by model and profile so that demo and paper runs never
share a mean. Each cell is the mean over the runs, the std over folds and, with several seeds, the
std over seeds (parents.seed_fold_stats, as the parent runs).
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from fersnet import names
from fersnet import catalog
from fersnet.errors import FersnetError
from fersnet.tracking.parents import HEADLINE_METRICS, seed_fold_stats
from fersnet.tracking.store import client_for, experiment_name, retry, store_error, tracking_uri

# The columns, in order, when any run has them (parents.HEADLINE_METRICS).
HEADLINE = HEADLINE_METRICS
GROUP = ("tags.model", "tags.profile")


def parse_tag_filters(items: list[str]) -> dict[str, str]:
    """`--filter profile=demo` -> {"profile": "demo"}; a malformed item is a user error."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not re.fullmatch(r"[A-Za-z0-9_.]+", key.strip()):
            raise FersnetError(f"--filter {item!r}: expected TAG=VALUE, e.g. profile=demo")
        out[key.strip()] = value.strip()
    return out


def fold_runs(cfg: dict, experiment_id: str, tags: dict[str, str]) -> pd.DataFrame:
    """The active fold runs of one experiment that carry `tags`, one row per run."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(cfg))
    filt = " AND ".join(["tags.kind = 'fold'"] + [f"tags.{k} = '{v}'" for k, v in tags.items()])
    return retry(mlflow.search_runs, experiment_ids=[experiment_id], filter_string=filt, output_format="pandas")


def summarise(runs: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """Per (model, profile): numbers of seeds, folds and runs, and seed_fold_stats of each headline
    metric present (mean over the runs, std over folds, std over seeds with two seeds or more).

    Returns the metric columns and a frame with `model`, `profile`, `seeds`, `folds`, `runs` and
    one {"mean", "std", "seed_std", "n", ...} dict (or None) per metric column, models in the
    paper's order. A run without a seed tag (logged before runs had one) counts as one seed, "?".
    """
    runs = runs.copy()
    for col in (*GROUP, "tags.seed"):
        runs[col] = runs[col].fillna("?") if col in runs else "?"
    columns = [m for m in HEADLINE if f"metrics.{m}" in runs and runs[f"metrics.{m}"].notna().any()]
    order = {m: i for i, m in enumerate(names.MODEL)}
    rows = []
    for (model, profile), group in runs.groupby(list(GROUP), sort=False):
        row = {"model": model, "profile": profile, "seeds": int(group["tags.seed"].nunique()),
               "folds": int(group["tags.fold"].nunique()), "runs": len(group)}
        for col in columns:
            s = seed_fold_stats(zip(group["tags.seed"], group["tags.fold"], group[f"metrics.{col}"]))
            row[col] = s if s["n"] else None
        rows.append(row)
    rows.sort(key=lambda r: (order.get(r["model"], len(order)), r["model"], r["profile"]))
    return columns, pd.DataFrame(rows, columns=["model", "profile", "seeds", "folds", "runs", *columns])


def format_cell(s: dict | None, runs: int) -> str:
    """`mean ± std over folds`, then `[± std over seeds]` with two seeds or more; `(n=k)` when
    only k of the group's runs have the metric; `-` when none. A spread of one value (None or
    NaN) is left out, never printed as `± 0`."""
    if s is None:
        return "-"
    def spread(x) -> str:
        return "" if x is None or x != x else f"{x:.2g}"
    text = f"{s['mean']:.4g}"
    if spread(s.get("std")):
        text += f" ± {spread(s['std'])}"
    if spread(s.get("seed_std")):
        text += f" [± {spread(s['seed_std'])}]"
    return text + ("" if s["n"] == runs else f" (n={s['n']})")


def format_table(db: str, columns: list[str], rows: pd.DataFrame) -> str:
    """A plain-text table (pandas to_string): one line per (model, profile), cells
    `mean ± std over folds [± std over seeds]`."""
    display = pd.DataFrame({
        "profile": rows["profile"], "seeds": rows["seeds"], "folds": rows["folds"], "runs": rows["runs"],
        **{col: [format_cell(s, n) for s, n in zip(rows[col], rows["runs"])] for col in columns}})
    display.index = [names.MODEL.get(m, m) for m in rows["model"]]
    several = bool((rows["seeds"] > 1).any())
    title = (f"{names.DATABASE.get(db, db)} (experiment {db}): mean over runs ± std over folds"
             + (" [± std over seeds]" if several else ""))
    return title + "\n" + display.to_string()


def _check_store(cfg: dict) -> None:
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise FersnetError(f"no MLflow store at {uri}; run the pipeline (or `fersnet track --sync`) first")


def main(cfg: dict, args) -> None:
    """Print one comparison table per database experiment found in the store."""
    tags = parse_tag_filters(getattr(args, "tags", []))
    experiments = [args.experiment] if getattr(args, "experiment", None) else list(catalog.database_keys())
    _check_store(cfg)
    found = []
    try:
        client = client_for(cfg)
        for db in experiments:
            exp = retry(client.get_experiment_by_name, experiment_name(cfg, db))
            if exp is None:
                if getattr(args, "experiment", None):
                    raise FersnetError(f"--experiment {db}: no such experiment in {tracking_uri(cfg)}")
                continue
            found.append((db, fold_runs(cfg, exp.experiment_id, tags)))
    except FersnetError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt, truncated or unreachable store: as `fersnet track` says it
        raise store_error(cfg, e) from None
    printed = 0
    for db, runs in found:
        if runs.empty:
            continue
        columns, rows = summarise(runs)
        print(format_table(db, columns, rows) + "\n")
        printed += 1
    if not printed:
        print("no fold runs match" + (f" {tags}" if tags else "") + f" in {tracking_uri(cfg)}")
    from fersnet.tracking.mlflow_log import status, summary_line
    print(summary_line(status(cfg)))       # the results on disk that the tables above lack
