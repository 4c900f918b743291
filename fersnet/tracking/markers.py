"""Marker files the workflow uses around MLflow and DVC, built on fersnet.paths' results root.

Kept free of MLflow imports: the Snakefile imports this module at every start.
"""
from __future__ import annotations

from pathlib import Path

MARKER_DIR = "_workflow"


def marker_dir(cfg: dict) -> Path:
    """results/_workflow/: orchestration bookkeeping, next to (never inside) the result folders."""
    return Path(cfg["paths"]["results"]) / MARKER_DIR


def init_marker(cfg: dict) -> Path:
    """Written by `fersnet track --init` once the store and parent runs exist."""
    return marker_dir(cfg) / "mlflow_init.json"


def parent_marker(cfg: dict, db: str, model: str) -> Path:
    """Written by `fersnet track --parent DB MODEL`: the mean and spreads over the (seed, fold)
    runs logged to the parent run."""
    return marker_dir(cfg) / f"parent_{db}_{model}.json"


def tracking_failures_dir(cfg: dict) -> Path:
    """results/_workflow/tracking_failed/: one record per fold (or parent run) MLflow did not take."""
    return marker_dir(cfg) / "tracking_failed"


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


def manifest(cfg: dict, name: str) -> Path:
    """Content-hash manifests (`folds`, `scores`) that connect dvc.yaml's stages."""
    return marker_dir(cfg) / f"{name}.manifest"
