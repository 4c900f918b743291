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


# --- a lost init marker ---------------------------------------------------------------------------
# Every training and judge job waits for the init marker (workflow/rules/train.smk), as ancient().
# ancient() keeps an existing marker's age from re-running anything, but a missing one makes
# Snakemake plan `track_init`, and a job planned to make an input re-runs every job that reads it,
# ancient or not: the whole grid would be trained again. So a marker that is gone while results
# exist (results/_workflow deleted, say) is re-created before Snakemake plans its jobs.
_DRY_RUN_FLAGS = ("--dry-run", "--dryrun", "--just-print", "-n")


def dry_run(argv) -> bool:
    """Whether a Snakemake command line asks for a dry run (-n, -np, --dry-run, ...)."""
    for arg in argv[1:]:
        if arg in _DRY_RUN_FLAGS or (arg.startswith("-") and not arg.startswith("--")
                                     and arg[1:].isalpha() and "n" in arg[1:]):
            return True
    return False


def init_marker_lost(cfg: dict, results) -> bool:
    """True when the init marker is missing while one of `results` (the fold results that
    wait for it) exists: it was made once and has been removed since."""
    return not init_marker(cfg).exists() and any(Path(r).exists() for r in results)


def restore_init_marker(cfg: dict, results, command: list[str], log, dry: bool) -> str | None:
    """Re-create a lost init marker by running `command` (`fersnet track --params ... --init`, the
    track_init rule's command) now, its output going to `log`; returns the line to print, or None
    when the marker is there (or was never made: a first run makes it through the rule). A store
    that cannot be used stops here, as the rule would stop the run (FersnetError naming the log).
    A dry run changes nothing and says what a real run will do instead."""
    if not init_marker_lost(cfg, results):
        return None
    marker = init_marker(cfg)
    if dry:
        return (f"fersnet: {marker} is missing; a real run re-creates it first (`fersnet track --init`) "
                "and re-runs nothing for it (this dry run may list the jobs that wait for it)")
    import subprocess

    from fersnet.errors import FersnetError
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        rc = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0 or not marker.exists():
        lines = log.read_text(errors="replace").strip().splitlines()
        raise FersnetError(f"{marker} was missing and could not be re-created ({lines[-1] if lines else 'no output'}; "
                           f"log: {log})")
    return f"fersnet: re-created the missing {marker} (`fersnet track --init`, log {log}); no job re-runs for it"
