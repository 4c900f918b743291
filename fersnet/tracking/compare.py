"""`fersnet compare`: models per database from MLflow, mean +- std over the logged folds.

Reads the fold runs (tag kind=fold) that `fersnet track` / the jobs wrote, as one pandas frame
per database (`mlflow.search_runs(output_format="pandas")`: a column per `metrics.*` and
`tags.*`); rows are grouped by model and profile so that demo and paper runs never share a mean.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from fersnet import names
from fersnet.config import DATABASES
from fersnet.errors import FersnetError
from fersnet.metrics.fold_stats import mean_std
from fersnet.tracking.mlflow_log import client_for, retry, tracking_uri

# The columns, in order, when any run has them. A fold's FID/KID/judge FD are logged unsized
# (their N differs by fold); synth/n_synthetic is that N, so each quantity is one column.
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "synth/judge_accuracy", "synth/judge_fid",
            "synth/fid", "synth/kid", "synth/ssim", "synth/psnr", "synth/n_synthetic")
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
    """Per (model, profile): number of folds and fold_stats.mean_std of each headline metric present.

    Returns the metric columns and a frame with `model`, `profile`, `folds` and one
    {"mean", "std", "n"} dict (or None) per metric column, models in the paper's order.
    """
    runs = runs.copy()
    for col in GROUP:
        runs[col] = runs[col].fillna("?") if col in runs else "?"
    columns = [m for m in HEADLINE if f"metrics.{m}" in runs and runs[f"metrics.{m}"].notna().any()]
    order = {m: i for i, m in enumerate(names.MODEL)}
    rows = []
    for (model, profile), group in runs.groupby(list(GROUP), sort=False):
        row = {"model": model, "profile": profile, "folds": int(group["tags.fold"].nunique())}
        for col in columns:
            s = mean_std(group[f"metrics.{col}"])
            row[col] = s if s["n"] else None
        rows.append(row)
    rows.sort(key=lambda r: (order.get(r["model"], len(order)), r["model"], r["profile"]))
    return columns, pd.DataFrame(rows, columns=["model", "profile", "folds", *columns])


def format_cell(s: dict | None, folds: int) -> str:
    """`mean ± std`; `(n=k)` when only k of the group's folds have the metric; `-` when none."""
    if s is None:
        return "-"
    n = "" if s["n"] == folds else f" (n={s['n']})"
    # one value has no spread (std NaN): print the value alone, not "± 0"
    return f"{s['mean']:.4g}{n}" if s["n"] == 1 else f"{s['mean']:.4g} ± {s['std']:.2g}{n}"


def format_table(db: str, columns: list[str], rows: pd.DataFrame) -> str:
    """A plain-text table (pandas to_string): one line per (model, profile), cells `mean ± std`."""
    display = pd.DataFrame({
        "profile": rows["profile"], "folds": rows["folds"],
        **{col: [format_cell(s, f) for s, f in zip(rows[col], rows["folds"])] for col in columns}})
    display.index = [names.MODEL.get(m, m) for m in rows["model"]]
    title = f"{names.DATABASE.get(db, db)} (experiment {db})"
    return title + "\n" + display.to_string()


def _check_store(cfg: dict) -> None:
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise FersnetError(f"no MLflow store at {uri}; run the pipeline (or `fersnet track --sync`) first")


def main(cfg: dict, args) -> None:
    """Print one comparison table per database experiment found in the store."""
    tags = parse_tag_filters(getattr(args, "tags", []))
    experiments = [args.experiment] if getattr(args, "experiment", None) else list(DATABASES)
    _check_store(cfg)
    client = client_for(cfg)
    printed = 0
    for db in experiments:
        try:
            exp = retry(client.get_experiment_by_name, db)
            runs = None if exp is None else fold_runs(cfg, exp.experiment_id, tags)
        except Exception as e:  # noqa: BLE001 - corrupt or unreachable store
            raise FersnetError(f"MLflow store {tracking_uri(cfg)} is not readable ({type(e).__name__}: {e})") from None
        if exp is None:
            if getattr(args, "experiment", None):
                raise FersnetError(f"--experiment {db}: no such experiment in {tracking_uri(cfg)}")
            continue
        if runs.empty:
            continue
        columns, rows = summarise(runs)
        print(format_table(db, columns, rows) + "\n")
        printed += 1
    if not printed:
        print("no fold runs match" + (f" {tags}" if tags else "") + f" in {tracking_uri(cfg)}")
    from fersnet.tracking.mlflow_log import status, summary_line
    print(summary_line(status(cfg)))       # the results on disk that the tables above lack
