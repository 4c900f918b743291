"""`fersnet compare`: models per database from MLflow, mean +- std over the logged folds.

Reads the fold runs (tag kind=fold) that `fersnet track` / the jobs wrote; rows are grouped by
model and profile so that demo and paper runs never share a mean.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from fersnet import names
from fersnet.config import DATABASES
from fersnet.errors import FersnetError
from fersnet.tracking.mlflow_log import client_for, retry, search_all, tracking_uri

# The headline metrics, in column order; FID/KID columns carry their sample size (fid_n<N>).
HEADLINE = ("accuracy", "synth/judge_accuracy", "synth/ssim", "synth/psnr")
SIZED = re.compile(r"^synth/(fid|kid|judge_fid)_n\d+$")


def parse_tag_filters(items: list[str]) -> dict[str, str]:
    """`--filter profile=demo` -> {"profile": "demo"}; a malformed item is a user error."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not re.fullmatch(r"[A-Za-z0-9_.]+", key.strip()):
            raise FersnetError(f"--filter {item!r}: expected TAG=VALUE, e.g. profile=demo")
        out[key.strip()] = value.strip()
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def summarise(runs: list) -> tuple[list[str], list[dict]]:
    """Group fold runs by (model, profile): number of folds and mean/std of each headline metric."""
    groups: dict[tuple[str, str], list] = {}
    for run in runs:
        key = (run.data.tags.get("model", "?"), run.data.tags.get("profile", "?"))
        groups.setdefault(key, []).append(run)
    present = {k for run in runs for k in run.data.metrics}
    columns = [m for m in HEADLINE if m in present] + sorted(m for m in present if SIZED.match(m))
    order = {m: i for i, m in enumerate(list(names.MODEL))}
    rows = []
    for (model, profile), group in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0])):
        row = {"model": model, "profile": profile,
               "folds": len({r.data.tags.get("fold") for r in group})}
        for col in columns:
            values = [r.data.metrics[col] for r in group if col in r.data.metrics]
            row[col] = _mean_std(values) + (len(values),) if values else None
        rows.append(row)
    return columns, rows


def format_table(db: str, columns: list[str], rows: list[dict]) -> str:
    """A plain-text table: one line per (model, profile), cells `mean +- std`."""
    header = ["model", "profile", "folds"] + columns
    body = []
    for row in rows:
        cells = [names.MODEL.get(row["model"], row["model"]), row["profile"], str(row["folds"])]
        for col in columns:
            cell = row[col]
            if cell is None:
                cells.append("-")
            else:   # fewer values than folds (e.g. fid_n<N> with N differing by fold): say how many
                n = "" if cell[2] == row["folds"] else f" (n={cell[2]})"
                # one value has no spread: print the value alone, not "± 0"
                cells.append(f"{cell[0]:.4g}{n}" if cell[2] == 1 else f"{cell[0]:.4g} ± {cell[1]:.2g}{n}")
        body.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    title = f"{names.DATABASE.get(db, db)} (experiment {db})"
    return "\n".join([title, line(header), line(["-" * w for w in widths])] + [line(b) for b in body])


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
        except Exception as e:  # noqa: BLE001 - corrupt or unreachable store
            raise FersnetError(f"MLflow store {tracking_uri(cfg)} is not readable ({type(e).__name__}: {e})") from None
        if exp is None:
            if getattr(args, "experiment", None):
                raise FersnetError(f"--experiment {db}: no such experiment in {tracking_uri(cfg)}")
            continue
        filt = " AND ".join([f"tags.kind = 'fold'"] + [f"tags.{k} = '{v}'" for k, v in tags.items()])
        runs = search_all(client, [exp.experiment_id], filt)
        if not runs:
            continue
        columns, rows = summarise(runs)
        print(format_table(db, columns, rows) + "\n")
        printed += 1
    if not printed:
        print("no fold runs match" + (f" {tags}" if tags else "") + f" in {tracking_uri(cfg)}")
