"""`fersnet compare`: models per database from MLflow, mean +- std over the logged (seed, fold) runs.

Reads the fold runs (tag kind=fold, one per seed and fold) that `fersnet track` / the jobs wrote,
as one pandas frame per database (`mlflow.search_runs(output_format="pandas")`: a column per
`metrics.*` and `tags.*`); rows are grouped by model and profile so that demo and paper runs never
share a mean. Each cell is the mean over the runs, the std over folds and, with several seeds, the
std over seeds (parents.seed_fold_stats, as the parent runs). Accuracies print in percent, like
the report's tables, each quantity at one precision, in two tables per database (recognition,
synthesis) of lines under 120 characters.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from fersnet import names
from fersnet import catalog
from fersnet.errors import FersnetError
from fersnet.tracking.parents import HEADLINE_METRICS, seed_fold_stats
from fersnet.tracking.store import client_for, experiment_name, retry, store_error, tracking_uri, ui_url

# The columns, in order, when any run has them (parents.HEADLINE_METRICS).
HEADLINE = HEADLINE_METRICS
GROUP = ("tags.model", "tags.profile")
# metric -> (column heading, decimals); those in PERCENT are fractions in MLflow, printed in %
COLUMNS = {
    "accuracy": ("accuracy %", 1), "balanced_accuracy": ("balanced acc. %", 1), "macro_f1": ("macro F1 %", 1),
    "synth/judge_accuracy": ("judged %", 1), "synth/judge_fid": ("judge FD", 2), "synth/fid": ("FID", 1),
    "synth/kid": ("KID", 4), "synth/ssim": ("SSIM", 3), "synth/psnr": ("PSNR dB", 1), "synth/n_synthetic": ("N", 0),
}
PERCENT = ("accuracy", "balanced_accuracy", "macro_f1", "synth/judge_accuracy")
WIDTH = 119
# where `mlflow ui --backend-store-uri ... --host 127.0.0.1` serves (README, "Comparing in MLflow")
UI_BASE = "http://127.0.0.1:5000"


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
    The PERCENT metrics are in % (a fraction is multiplied by 100; a value above 1 is one already).
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
            values = group[f"metrics.{col}"]
            if col in PERCENT:
                values = values.where(values.isna() | (values.abs() > 1), values * 100)
            s = seed_fold_stats(zip(group["tags.seed"], group["tags.fold"], values))
            row[col] = s if s["n"] else None
        rows.append(row)
    rows.sort(key=lambda r: (order.get(r["model"], len(order)), r["model"], r["profile"]))
    return columns, pd.DataFrame(rows, columns=["model", "profile", "seeds", "folds", "runs", *columns])


def format_cell(s: dict | None, runs: int, decimals: int = 2) -> str:
    """`mean ± std over folds`, then `[± std over seeds]` with two seeds or more, all at `decimals`;
    `(n=k)` when only k of the group's runs have the metric; `-` when none. A spread of one value
    (None or NaN) is left out, never printed as `± 0`."""
    if s is None:
        return "-"
    def spread(x) -> str:
        return "" if x is None or x != x else f"{x:.{decimals}f}"
    text = f"{s['mean']:.{decimals}f}"
    if spread(s.get("std")):
        text += f" ± {spread(s['std'])}"
    if spread(s.get("seed_std")):
        text += f" [± {spread(s['seed_std'])}]"
    return text + ("" if s["n"] == runs else f" (n={s['n']})")


def _cells(rows: pd.DataFrame, columns: list[str]) -> dict[str, list[str]]:
    return {COLUMNS.get(c, (c, 2))[0]: [format_cell(s, n, COLUMNS.get(c, (c, 2))[1])
                                        for s, n in zip(rows[c], rows["runs"])] for c in columns}


def format_table(db: str, columns: list[str], rows: pd.DataFrame, experiment: str | None = None) -> str:
    """Plain-text tables (pandas to_string), one line per (model, profile), cells `mean ± std over
    folds [± std over seeds]`: recognition (the runs, accuracies in %), then synthesis (the
    `synth/` metrics, for the models that have any). Lines longer than WIDTH wrap (pandas).
    `experiment`: the MLflow experiment's name, as the store and its UI spell it (default `db`)."""
    index = [names.MODEL.get(m, m) for m in rows["model"]]
    fer = [c for c in columns if not c.startswith("synth/")]
    synth = [c for c in columns if c.startswith("synth/")]
    several = bool((rows["seeds"] > 1).any())
    title = (f"{names.DATABASE.get(db, db)} (experiment {experiment or db}): mean over runs ± std over folds"
             + (" [± std over seeds]" if several else ""))
    recognition = pd.DataFrame({"profile": rows["profile"], "seeds": rows["seeds"], "folds": rows["folds"],
                                "runs": rows["runs"], **_cells(rows, fer)})
    recognition.index = index
    parts = [title, recognition.to_string(line_width=WIDTH)]
    has_synth = rows[synth].notna().any(axis=1) if synth else pd.Series(False, index=rows.index)
    if has_synth.any():
        synthesis = pd.DataFrame({"profile": rows["profile"], **_cells(rows, synth)})[has_synth.to_numpy()]
        synthesis.index = [name for name, keep in zip(index, has_synth) if keep]
        parts += ["synthesis", synthesis.to_string(line_width=WIDTH)]
    return "\n".join(parts)


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
            found.append((db, fold_runs(cfg, exp.experiment_id, tags), exp.experiment_id))
    except FersnetError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt, truncated or unreachable store: as `fersnet track` says it
        raise store_error(cfg, e) from None
    printed = 0
    for db, runs, exp_id in found:
        if runs.empty:
            continue
        columns, rows = summarise(runs)
        print(format_table(db, columns, rows, experiment_name(cfg, db)))
        print(f"  in mlflow ui: {ui_url(UI_BASE, exp_id)}\n")
        printed += 1
    if not printed:
        print("no fold runs match" + (f" {tags}" if tags else "") + f" in {tracking_uri(cfg)}")
    from fersnet.tracking.mlflow_log import status, summary_line
    print(summary_line(status(cfg)))       # the results on disk that the tables above lack
