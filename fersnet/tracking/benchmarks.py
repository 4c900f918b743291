"""Per-job time and peak memory from Snakemake's benchmark files, for the MLflow parent runs.

Every train, judge and score job of the workflow leaves
benchmarks/<step>/<db>_<model>_seed<s>_<group>.tsv (fersnet.paths.benchmark_file): wall seconds,
CPU seconds and peak resident memory (max_rss, MB) of the job's process tree. A job runs a group of
folds (orchestration.folds_per_job) of one seed, so these are numbers of a job, not of a fold: they
go on the parent run of (database, model), which is logged after the jobs of all its seeds ended. Snakemake writes the file when the job ends, so a file older than the
results of its folds is from an earlier run and is left out. Standard library only.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from fersnet import paths
from fersnet.config import fold_groups

# the steps whose jobs make the results of a (database, model) parent run
STEPS = {"judge": ("judge",)}
DEFAULT_STEPS = ("train", "score")
# benchmark column -> metric name, and how several rows of one file (Snakemake's repeat()) combine
COLUMNS = {"s": ("seconds", "mean"), "cpu_time": ("cpu_seconds", "mean"), "max_rss": ("max_rss_mb", "max")}


@dataclass
class JobRecord:
    """The benchmark of one job: its step, the seed and folds it ran, and its numbers."""

    step: str
    seed: int
    folds: list[int]
    file: Path
    values: dict


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):             # "NA" or "-" where psutil could not measure
        return None
    return value if math.isfinite(value) else None


def read_benchmark(path: Path) -> dict:
    """The metric values of one benchmark file (COLUMNS), over all its rows; {} when unreadable."""
    try:
        with Path(path).open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    out = {}
    for column, (name, combine) in COLUMNS.items():
        values = [v for v in (_number(r.get(column)) for r in rows) if v is not None]
        if values:
            out[name] = max(values) if combine == "max" else sum(values) / len(values)
    return out


def _outputs(cfg: dict, step: str, db: str, model: str, fold: int, seed: int) -> Path:
    if step == "judge":
        return paths.judge_dir(cfg, db, fold, seed) / paths.METRICS
    if step == "score":
        return paths.synthesis_dir(cfg, db, model, fold, seed) / paths.SCORES
    return paths.run_dir(cfg, db, model, fold, seed) / paths.METRICS


def _current(cfg: dict, step: str, db: str, model: str, seed: int, folds: list[int], bench: Path) -> bool:
    """Whether the benchmark was written after the results of its folds (it is from the run that
    made them); results that are not there make it stale too."""
    try:
        written = bench.stat().st_mtime_ns
        made = max(_outputs(cfg, step, db, model, k, seed).stat().st_mtime_ns for k in folds)
    except OSError:
        return False
    return written >= made


def job_records(cfg: dict, db: str, model: str) -> list[JobRecord]:
    """The benchmarks of the jobs behind the parent run of (db, model) (model `judge`: the judges),
    for every seed of params `run_seeds` and today's fold groups, leaving out absent, unreadable and
    stale files."""
    records = []
    for step in STEPS.get(model, DEFAULT_STEPS):
        for seed in cfg["run_seeds"]:
            for group in fold_groups(cfg):
                bench = paths.benchmark_file(step, db, None if step == "judge" else model,
                                             paths.group_tag(group), int(seed))
                if not bench.is_file() or not _current(cfg, step, db, model, int(seed), group, bench):
                    continue
                values = read_benchmark(bench)
                if values:
                    records.append(JobRecord(step, int(seed), list(group), bench, values))
    return records


def job_step(record: JobRecord, n_folds: int) -> int:
    """The MLflow step of a job's point on the parent run: seed × n_folds + the job's first fold,
    so the jobs of every seed have their own step (seed 0: the fold) and step // n_folds is the
    seed, step % n_folds the fold."""
    return int(record.seed) * int(n_folds) + int(record.folds[0])


def parent_metrics(records: list[JobRecord], n_folds: int) -> list[tuple[str, float, int]]:
    """(name, value, step) for the parent run: each job's numbers as `job/<step>/<name>` with the
    MLflow step from its seed and first fold (job_step; one point per job), and per pipeline step
    the total seconds, the largest peak memory and the number of jobs, over all seeds."""
    out = []
    for r in records:
        out += [(f"job/{r.step}/{name}", value, job_step(r, n_folds)) for name, value in sorted(r.values.items())]
    for step in dict.fromkeys(r.step for r in records):
        mine = [r.values for r in records if r.step == step]
        out.append((f"job/{step}/n_jobs", float(len(mine)), 0))
        for name in ("seconds", "cpu_seconds"):
            values = [v[name] for v in mine if name in v]
            if values:
                out.append((f"job/{step}/{name}_total", sum(values), 0))
        peaks = [v["max_rss_mb"] for v in mine if "max_rss_mb" in v]
        if peaks:
            out.append((f"job/{step}/max_rss_mb_peak", max(peaks), 0))
    return out
