"""Parent runs: one per (database, model), summarising its (seed, fold) runs.

Tags kind=parent, database, model, profile, and the seeds and folds it summarises; params: the
settings the model's jobs read (provenance.job_params); metrics: mean, std over folds and std over
seeds of the headline metrics (PARENT_METRICS) over all the (seed, fold) runs of params `run_seeds`
(seed_fold_stats), and the jobs' time and memory (benchmarks.py).
"""
from __future__ import annotations

import math
import time

from fersnet import provenance
from fersnet.tracking import benchmarks
from fersnet.tracking.folds import (PARAM_VALUE_MAX, clear_failure, final_metrics, finished_folds, flat_params,
                                    fold_folder, log_fold, record_failure)
from fersnet.tracking.store import (client_for, ensure_experiment, ensure_parent, log_batches, retry, search_all,
                                    store_lock, tag_filter)

# The fold metrics a reader compares first, in order: `fersnet compare`'s columns. A fold's FID/KID/judge
# FD are logged unsized (their N differs by fold); synth/n_synthetic is that N.
HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "synth/judge_accuracy", "synth/judge_fid",
                    "synth/fid", "synth/kid", "synth/ssim", "synth/psnr", "synth/n_synthetic")

# what a parent run summarises (mean, _std, _seed_std): those, and the job's training time
PARENT_METRICS = HEADLINE_METRICS + ("seconds",)


def seed_fold_stats(rows) -> dict:
    """fold_stats.run_stats of (seed, fold, value) rows, for MLflow: undefined numbers are None
    (a std of one value, a seed spread of one seed), never NaN or 0."""
    from fersnet.metrics.fold_stats import run_stats

    s = run_stats({(k, seed): v for seed, k, v in rows if v is not None})
    mean, std = (x if x is not None and math.isfinite(x) else None for x in (s["mean"], s["std"]))
    return {"mean": mean if s["n"] else None, "std": std, "seed_std": s["seed_std"],
            "n": s["n"], "n_folds": s["n_folds"], "n_seeds": s["n_seeds"]}


def fold_statistics(cfg: dict, db: str, model: str) -> dict:
    """Mean, std over folds and std over seeds (seed_fold_stats) of every final metric over the
    finished (seed, fold) runs of (db, model), for the parent run and its record."""
    per_run = {(s, k): final_metrics(fold_folder(cfg, db, model, k, s)) for s, k in finished_folds(cfg, db, model)}
    names = sorted({n for m in per_run.values() for n in m})
    stats = {name: seed_fold_stats((s, k, m[name]) for (s, k), m in per_run.items() if name in m)
             for name in names}
    seeds = sorted({s for s, _ in per_run})
    folds = sorted({k for _, k in per_run})
    return {"database": db, "model": model, "seeds": seeds, "folds": folds,
            "runs": [[s, k] for s, k in sorted(per_run)], "n_folds_done": len(folds),
            "n_seeds_done": len(seeds), "n_runs_done": len(per_run), "metrics": stats}


def log_parent(cfg: dict, db: str, model: str) -> dict:
    """Re-log the (seed, fold) runs of (db, model) (cheap when unchanged) and put the mean, std
    over folds and std over seeds on the parent run."""
    from mlflow.entities import Metric

    stats = fold_statistics(cfg, db, model)
    for seed, fold in stats["runs"]:
        log_fold(cfg, db, model, fold, "parent", seed)
    try:
        with store_lock(cfg):
            client = client_for(cfg)
            exp_id = ensure_experiment(client, cfg, db)
            parent = ensure_parent(client, exp_id, db, model, cfg["profile"])
            parent = _parent_params(client, exp_id, parent, cfg, db, model)
            now = int(time.time() * 1000)
            metrics = [Metric(name, float(stats[name]), now, 0)
                       for name in ("n_folds_done", "n_seeds_done", "n_runs_done")]
            for name, s in stats["metrics"].items():
                if s["mean"] is None or name not in PARENT_METRICS:
                    continue
                metrics.append(Metric(f"{name}_mean", s["mean"], now, 0))
                # one fold (one seed) has no spread: no _std (_seed_std) rather than a false 0
                if s["std"] is not None:
                    metrics.append(Metric(f"{name}_std", s["std"], now, 0))
                if s["seed_std"] is not None:
                    metrics.append(Metric(f"{name}_seed_std", s["seed_std"], now, 0))
            # time and peak memory of the jobs behind these runs (Snakemake's benchmarks/)
            jobs = benchmarks.job_records(cfg, db, model)
            metrics += [Metric(k, v, now, step) for k, v, step in benchmarks.parent_metrics(jobs, cfg["n_folds"])]
            log_batches(client, parent, metrics, [])
            retry(client.set_tag, parent, "folds", ",".join(map(str, stats["folds"])))
            retry(client.set_tag, parent, "seeds", ",".join(map(str, stats["seeds"])))
    except Exception as e:
        record_failure(cfg, db, model, None, "parent", e)
        raise
    clear_failure(cfg, db, model, None)
    stats["parent_run_id"] = parent
    return stats


def parent_params(cfg: dict, model: str) -> dict[str, str]:
    """The params a parent run carries: the settings its model's jobs read (provenance.job_params),
    flattened, plus the profile."""
    verb = "judge" if model == "judge" else "train"
    flat = flat_params(provenance.job_params(cfg, verb, None if model == "judge" else model))
    return {"profile": str(cfg["profile"]), **{k: str(v)[:PARAM_VALUE_MAX] for k, v in sorted(flat.items())}}


def _parent_params(client, exp_id: str, parent: str, cfg: dict, db: str, model: str) -> str:
    """Log parent_params on the parent run; MLflow params cannot change, so a parent logged with other
    settings (its folds were re-made since) is replaced by a new parent that its fold runs move to."""
    from mlflow.entities import Param
    want = parent_params(cfg, model)
    have = retry(client.get_run, parent).data.params
    if any(have.get(k, v) != v for k, v in want.items()):
        tags = {"kind": "parent", "database": db, "model": model, "profile": cfg["profile"]}
        new = retry(client.create_run, exp_id, run_name=f"{model} ({cfg['profile']})", tags=tags).info.run_id
        retry(client.set_terminated, new, "FINISHED")
        for run in search_all(client, [exp_id], tag_filter({"kind": "fold", "database": db, "model": model,
                                                         "profile": cfg["profile"]})):
            retry(client.set_tag, run.info.run_id, "mlflow.parentRunId", new)
        retry(client.delete_run, parent)
        parent, have = new, {}
    missing = [Param(k, v) for k, v in want.items() if k not in have]
    log_batches(client, parent, [], missing)
    return parent
