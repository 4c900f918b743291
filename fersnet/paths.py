"""The one place that builds paths. The CLI, the Snakefile and dvc.yaml all use these.

Layout (docs/architecture.md):
    <synth.out>/<db>/...                          raw databases, native layout (stand-in)
    <preprocess.out>/<db>/                        images.npy, meta.csv, report.md, contact_sheet.png
    <paths.results>/<db>/<model>/seed<s>/fold<k>/            one training job (seed s of params `run_seeds`)
    <paths.results>/<db>/<model>/seed<s>/fold<k>/synthesis/  scored synthesis of that job
    <paths.results>/<db>/<model>/seed<s>/synthesis_pooled.json   FID/KID pooled over the folds of seed s
    <paths.results>/<db>/judge/seed<s>/fold<k>/              the standard FER model of that fold
    <paths.results>/_workflow/                    the workflow's bookkeeping (workflow_dir):
        mlflow_init.json, parent_<db>_<model>.json      what `fersnet track --init` / `--parent` recorded
        tracking_failed/<db>_<model>_seed<s>_fold<k>.json   a run MLflow did not take (parent_<db>_<model>.json)
        folds.manifest, scores.manifest                 content hashes that link dvc.yaml's stages
    <paths.reports>/                              tables, figures, summary.json, report.pdf
    benchmarks/<step>/<db>_<model>_<group>.tsv     Snakemake's time and memory record of one job
"""
from __future__ import annotations

import re
from pathlib import Path

# file names inside the folders above
IMAGES = "images.npy"
META = "meta.csv"
PREP_REPORT = "report.md"
PREP_SUMMARY = "summary.json"
CONTACT_SHEET = "contact_sheet.png"

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.csv"
PREDICTIONS = "predictions.csv"
METRICS = "metrics.json"
DONE = "metrics.json"          # a job is complete when its metrics file exists (written last)

SYNTH_IMAGES = "images.npy"
SYNTH_INDEX = "index.csv"
SYNTH_GRID = "grid.png"
SCORES = "scores.json"


def raw_dir(cfg: dict, db: str) -> Path:
    """Root of a database in its native layout (synthetic stand-in or a user's copy)."""
    return Path(cfg["data"][db]["root"])


def synth_dir(cfg: dict, db: str) -> Path:
    return Path(cfg["synth"]["out"]) / db


def processed_dir(cfg: dict, db: str) -> Path:
    return Path(cfg["preprocess"]["out"]) / db


def seed_dir(cfg: dict, db: str, model: str, seed: int | None = None) -> Path:
    """The runs of one (database, model) trained with one seed; `seed` defaults to the job's
    (`cfg["seed"]`, fersnet.config.with_seed)."""
    seed = cfg["seed"] if seed is None else seed
    return Path(cfg["paths"]["results"]) / db / model / f"seed{int(seed)}"


def run_dir(cfg: dict, db: str, model: str, fold: int, seed: int | None = None) -> Path:
    return seed_dir(cfg, db, model, seed) / f"fold{int(fold)}"


def judge_dir(cfg: dict, db: str, fold: int, seed: int | None = None) -> Path:
    return run_dir(cfg, db, "judge", fold, seed)


def synthesis_dir(cfg: dict, db: str, model: str, fold: int, seed: int | None = None) -> Path:
    return run_dir(cfg, db, model, fold, seed) / "synthesis"


def pooled_file(cfg: dict, db: str, model: str, seed: int | None = None) -> Path:
    """FID/KID of one generator pooled over the folds of one seed (`fersnet pool`)."""
    return seed_dir(cfg, db, model, seed) / "synthesis_pooled.json"


def run_label(db: str, model: str, fold: int | None = None, seed: int | None = None) -> str:
    """How logs, MLflow and messages name a run: ckplus/fersnet, ckplus/fersnet/seed0/fold3."""
    label = f"{db}/{model}"
    if seed is not None:
        label += f"/seed{int(seed)}"
    return label if fold is None else f"{label}/fold{int(fold)}"


# --- the workflow's bookkeeping (results/_workflow/) ------------------------------------------------
WORKFLOW_DIR = "_workflow"


def workflow_dir(cfg: dict) -> Path:
    """results/_workflow/: the workflow's records around MLflow and DVC, next to (never inside) the
    result folders."""
    return Path(cfg["paths"]["results"]) / WORKFLOW_DIR


def mlflow_init_record(cfg: dict) -> Path:
    """Written by `fersnet track --init` once the MLflow store and parent runs exist; every training
    and judge job of the workflow waits for it."""
    return workflow_dir(cfg) / "mlflow_init.json"


def parent_record(cfg: dict, db: str, model: str) -> Path:
    """Written by `fersnet track --parent DB MODEL`: the mean and spreads over the (seed, fold)
    runs logged to the parent run."""
    return workflow_dir(cfg) / f"parent_{db}_{model}.json"


def tracking_failures_dir(cfg: dict) -> Path:
    """results/_workflow/tracking_failed/: one record per fold (or parent run) MLflow did not take."""
    return workflow_dir(cfg) / "tracking_failed"


def tracking_failure(cfg: dict, db: str, model: str, fold: int | None = None, seed: int | None = None) -> Path:
    """The failure record of a fold run (`<db>_<model>_seed<s>_fold<k>.json`; seed None: the
    job's, cfg["seed"]) or, fold None, of the parent run of (db, model) over all its seeds
    (`parent_<db>_<model>.json`); removed once it is logged."""
    if fold is None:
        name = f"parent_{db}_{model}"
    else:
        seed = cfg["seed"] if seed is None else seed
        name = f"{db}_{model}_seed{int(seed)}_fold{int(fold)}"
    return tracking_failures_dir(cfg) / f"{name}.json"


def stage_manifest(cfg: dict, stage: str) -> Path:
    """The content-hash manifest of a dvc.yaml stage (`folds`, `scores`) that the next stage reads."""
    return workflow_dir(cfg) / f"{stage}.manifest"


def reports_dir(cfg: dict) -> Path:
    return Path(cfg["paths"]["reports"])


def group_tag(group: list[int]) -> str:
    """A name for a group of folds run by one job, usable in rule, log and benchmark names: fold3, folds0_9."""
    return f"fold{group[0]}" if len(group) == 1 else f"folds{group[0]}_{group[-1]}"


def group_size(tag: str) -> int | None:
    """The number of folds of a group_tag (its groups are contiguous): fold3 -> 1, folds0_9 -> 10;
    None for any other name."""
    if m := re.fullmatch(r"fold(\d+)|folds(\d+)_(\d+)", tag):
        return 1 if m.group(1) is not None else int(m.group(3)) - int(m.group(2)) + 1
    return None


def benchmark_file(step: str, db: str, model: str | None, group: str, seed="{seed}") -> Path:
    """Snakemake's benchmark record of one job (time, peak memory) of `step` (train, judge, score)
    on a fold group (`group_tag`) of one seed; the judge has no model.
    Relative to the folder Snakemake runs in, the project root."""
    group = f"seed{seed}_{group}"
    name = f"{db}_{group}" if model is None else f"{db}_{model}_{group}"
    return Path("benchmarks") / step / f"{name}.tsv"
