"""MLflow mirror of the results on disk: `fersnet track --init | --sync | --parent DB MODEL` and `log_job`.

The files under results/ are the truth (docs/architecture.md); MLflow is a view of them that can be
rebuilt at any time with `--sync`. Layout (docs/orchestration.md):
  - one experiment per database (name = database key), artifacts under <project>/mlruns/<db>;
  - one parent run per (database, model), tags kind=parent, database, model, profile;
  - one child run per fold, tags kind=fold, database, model, fold, profile, git_commit,
    mlflow.parentRunId, and `stamp` (hash of the fold's result files) that makes re-logging idempotent.
SQLite is shared by up to N concurrent jobs: every store call retries "database is locked" with
jittered exponential backoff, and metrics/params go in batches (MlflowClient.log_batch).
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fersnet import paths
from fersnet.config import DATABASES, MODELS
from fersnet.errors import FersnetError
from fersnet.tracking import markers

TRACKED_MODELS = tuple(MODELS) + ("judge",)
BATCH_METRICS = 1000          # MLflow's per-request limits for log_batch
BATCH_PARAMS = 100
PARAM_VALUE_MAX = 6000
LOCK_ATTEMPTS = 15


class TrackingError(FersnetError):
    """The MLflow store cannot be used (unreachable, corrupt); the results on disk are unaffected."""


def tracking_uri(cfg: dict) -> str:
    """`mlflow.uri`, else SQLite in the project: sqlite:////<abs project>/mlflow.db."""
    return cfg["mlflow"]["uri"] or f"sqlite:///{(Path.cwd() / 'mlflow.db').resolve()}"


def artifact_location(uri: str, db: str) -> str | None:
    """<dir of mlflow.db>/mlruns/<db> for a SQLite store; a server decides for itself (None)."""
    if not uri.startswith("sqlite:///"):
        return None
    store = Path(uri[len("sqlite:///"):])
    return (store.parent / "mlruns" / db).resolve().as_uri()


def _is_lock_error(e: Exception) -> bool:
    text = str(e).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def retry(fn, *args, **kwargs):
    """Call an MLflow store function, retrying SQLite lock contention with jittered backoff."""
    delay = 0.05
    for attempt in range(LOCK_ATTEMPTS):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - MLflow wraps sqlite errors in several types
            if not _is_lock_error(e) or attempt == LOCK_ATTEMPTS - 1:
                raise
            time.sleep(delay * (1.0 + random.random()))
            delay = min(delay * 2.0, 2.0)


def client_for(cfg: dict):
    """An MlflowClient on the configured store; the SQLite file's folder must exist."""
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "") + "'"


def _filter(tags: dict) -> str:
    return " AND ".join(f"tags.{k} = {_quote(v)}" for k, v in tags.items())


def search_all(client, experiment_ids: list[str], filter_string: str) -> list:
    """Every active run matching the filter (search_runs pages at 1000)."""
    runs, token = [], None
    while True:
        page = retry(client.search_runs, experiment_ids, filter_string=filter_string,
                     max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def ensure_experiment(client, cfg: dict, db: str) -> str:
    """The experiment of one database (created with its artifact location on first use)."""
    exp = retry(client.get_experiment_by_name, db)
    if exp is not None:
        return exp.experiment_id
    try:
        return retry(client.create_experiment, db,
                     artifact_location=artifact_location(tracking_uri(cfg), db),
                     tags={"database": db})
    except Exception:  # noqa: BLE001 - another process created it first
        exp = retry(client.get_experiment_by_name, db)
        if exp is None:
            raise
        return exp.experiment_id


def _oldest(runs: list):
    return min(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def ensure_parent(client, exp_id: str, db: str, model: str, profile: str) -> str:
    """The parent run of (db, model, profile); concurrent creators converge on the oldest one."""
    tags = {"kind": "parent", "database": db, "model": model, "profile": profile}
    found = search_all(client, [exp_id], _filter(tags))
    if found:
        return _oldest(found).info.run_id
    run = retry(client.create_run, exp_id, run_name=f"{model} ({profile})", tags=tags)
    retry(client.set_terminated, run.info.run_id, "FINISHED")
    found = search_all(client, [exp_id], _filter(tags))
    keep = _oldest(found).info.run_id if found else run.info.run_id
    if keep != run.info.run_id:
        retry(client.delete_run, run.info.run_id)
    return keep


def fold_folder(cfg: dict, db: str, model: str, fold: int) -> Path:
    return paths.judge_dir(cfg, db, fold) if model == "judge" else paths.run_dir(cfg, db, model, fold)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FersnetError(f"{path}: cannot read result file ({e})") from None


def result_stamp(folder: Path) -> str:
    """Hash of the files a fold run mirrors; equal stamps mean nothing to re-log."""
    h = hashlib.sha1()
    for f in (folder / paths.METRICS, folder / "synthesis" / paths.SCORES):
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _flatten(tree, prefix: str = "", sep: str = ".") -> dict:
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}{sep}", sep))
    else:
        out[prefix.rstrip(sep)] = tree
    return out


def _finite(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
    value = float(value)
    return value if math.isfinite(value) else None


_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-./ :]")
# A sample size in a metric's name (fid_n180, kid_n180_std) suits a pooled metric, computed at one N.
# A fold's N follows its test set, so sized per-fold names would split one quantity into a column
# per fold size; the fold's FID/KID/judge FD are logged unsized, next to synth/n_synthetic.
_SIZED_NAME = re.compile(r"_n\d+(_std)?$")


def metric_name(name: str) -> str:
    return _METRIC_NAME.sub("_", name)


def final_metrics(folder: Path) -> dict[str, float]:
    """Scalars of metrics.json (per_class_recall as recall/<class>) and of synthesis/scores.json
    (as synth/<key>, nested dicts as synth/<key>/<sub>; sized keys such as fid_n180 left out,
    their unsized twins `fid`, `kid`, `judge_fid` and `n_synthetic` carry the same numbers)."""
    out = {}
    m = _read_json(folder / paths.METRICS)
    for key, value in m.items():
        if key in ("fold",):
            continue
        if key == "per_class_recall" and isinstance(value, dict):
            for cls, v in value.items():
                if _finite(v) is not None:
                    out[metric_name(f"recall/{cls}")] = _finite(v)
        elif _finite(value) is not None and not isinstance(value, (str, list, dict)):
            out[metric_name(key)] = _finite(value)
    scores_path = folder / "synthesis" / paths.SCORES
    if scores_path.is_file():
        for key, value in _flatten(_read_json(scores_path), sep="/").items():
            if _SIZED_NAME.search(key):
                continue
            if not isinstance(value, (str, list)) and _finite(value) is not None:
                out[metric_name(f"synth/{key}")] = _finite(value)
    return out


def history_metrics(folder: Path) -> list[tuple[str, float, int]]:
    """(name, value, step=epoch) for every numeric cell of history.csv."""
    path = folder / paths.HISTORY
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            epoch = _finite(row.get("epoch"))
            if epoch is None:
                continue
            for key, value in row.items():
                v = _finite(value) if key != "epoch" and value not in ("", None) else None
                if v is not None:
                    rows.append((metric_name(key), v, int(epoch)))
    return rows


def _log_batches(client, run_id: str, metrics: list, params: list) -> None:
    for i in range(0, len(params), BATCH_PARAMS):
        retry(client.log_batch, run_id, params=params[i:i + BATCH_PARAMS])
    for i in range(0, len(metrics), BATCH_METRICS):
        retry(client.log_batch, run_id, metrics=metrics[i:i + BATCH_METRICS])


def _confusion_csv(metrics: dict, folder: Path) -> Path | None:
    confusion, classes = metrics.get("confusion"), metrics.get("classes")
    if not confusion or not classes:
        return None
    path = folder / "confusion.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true\\pred"] + list(classes))
        for cls, row in zip(classes, confusion):
            w.writerow([cls] + list(row))
    return path


def _log_artifacts(client, run_id: str, folder: Path, metrics: dict) -> None:
    for name in (paths.METRICS, paths.CONFIG, paths.HISTORY):
        if (folder / name).is_file():
            retry(client.log_artifact, run_id, str(folder / name))
    synthesis = folder / "synthesis"
    for name in (paths.SCORES, paths.SYNTH_GRID):
        if (synthesis / name).is_file():
            retry(client.log_artifact, run_id, str(synthesis / name), "synthesis")
    with tempfile.TemporaryDirectory() as tmp:
        confusion = _confusion_csv(metrics, Path(tmp))
        if confusion is not None:
            retry(client.log_artifact, run_id, str(confusion))


def sync_fold(client, cfg: dict, db: str, model: str, fold: int) -> str:
    """Mirror one finished fold folder into MLflow; returns created, replaced, unchanged or missing.

    A run whose `stamp` tag matches the files on disk is left alone (idempotent); otherwise older
    runs of the same (db, model, fold, profile) are deleted and one fresh run is logged, with the
    stamp set last so that an interrupted logging is redone next time.
    """
    from mlflow.entities import Metric, Param

    folder = fold_folder(cfg, db, model, fold)
    if not (folder / paths.METRICS).is_file():
        return "missing"
    job_cfg = _read_json(folder / paths.CONFIG) if (folder / paths.CONFIG).is_file() else {}
    job = job_cfg.get("job", {}) if isinstance(job_cfg, dict) else {}
    profile = str(job_cfg.get("profile") or cfg["profile"])
    stamp = result_stamp(folder)
    exp_id = ensure_experiment(client, cfg, db)
    parent = ensure_parent(client, exp_id, db, model, profile)
    identity = {"kind": "fold", "database": db, "model": model, "fold": str(fold), "profile": profile}
    existing = search_all(client, [exp_id], _filter(identity))
    current = [r for r in existing if r.data.tags.get("stamp") == stamp]
    for r in existing:
        if not current or r.info.run_id != current[0].info.run_id:
            retry(client.delete_run, r.info.run_id)
    if current:
        return "unchanged"
    commit = str(job.get("git_commit") or _git_commit())
    result = _read_json(folder / paths.METRICS)
    prov_file = folder / "provenance.json"
    env = ((_read_json(prov_file) if prov_file.is_file() else {}).get("environment")) or {}
    tags = dict(identity, git_commit=commit, fingerprint=str(result.get("fingerprint") or "unrecorded"),
                code_version=str(result.get("code_version") or "unrecorded"),
                **{"mlflow.parentRunId": parent, "mlflow.source.git.commit": commit},
                **{f"env.{k}": str(v) for k, v in env.items() if v is not None})
    run_id = retry(client.create_run, exp_id, run_name=f"{model}/fold{fold}", tags=tags).info.run_id
    now = int(time.time() * 1000)
    params = [Param(k, str(v)[:PARAM_VALUE_MAX]) for k, v in sorted(_flatten(job_cfg).items())
              if k != "profiles" and not k.startswith("profiles.")]
    metrics = [Metric(k, v, now, s) for k, v, s in history_metrics(folder)]
    metrics += [Metric(k, v, now, 0) for k, v in sorted(final_metrics(folder).items())]
    _log_batches(client, run_id, metrics, params)
    _log_artifacts(client, run_id, folder, _read_json(folder / paths.METRICS))
    retry(client.set_tag, run_id, "stamp", stamp)
    retry(client.set_terminated, run_id, "FINISHED")
    return "replaced" if existing else "created"


def _job_target(verb: str, args) -> tuple[str, str, int]:
    if verb == "judge":
        return args.db, "judge", int(args.fold)
    return args.db, args.model, int(args.fold)


def log_job(cfg: dict, verb: str, args) -> str:
    """Called by the CLI after a successful train, judge or score job: mirror its fold folder.

    Any failure propagates to the CLI, which prints it as a warning (the results stay on disk).
    With `mlflow.log_jobs: false` nothing is imported or logged here: the workflow's
    `track --parent` step logs the folds of each (db, model) in one process instead.
    """
    if not cfg["mlflow"]["enabled"]:
        return "disabled"
    if not cfg["mlflow"].get("log_jobs", True):
        return "deferred"
    db, model, fold = _job_target(verb, args)
    return sync_fold(client_for(cfg), cfg, db, model, fold)


def finished_folds(cfg: dict, db: str, model: str) -> list[int]:
    """Folds of (db, model) whose metrics.json exists, from the results folder."""
    base = fold_folder(cfg, db, model, 0).parent
    if not base.is_dir():
        return []
    folds = [int(p.name[4:]) for p in base.glob("fold*") if p.name[4:].isdigit()]
    return sorted(k for k in folds if (fold_folder(cfg, db, model, k) / paths.METRICS).is_file())


def fold_statistics(cfg: dict, db: str, model: str) -> dict:
    """Mean and std of every final metric over the finished folds (fold_stats.mean_std, as the
    report tables: ddof=1; std null for one fold)."""
    from fersnet.metrics.fold_stats import mean_std

    per_fold = {k: final_metrics(fold_folder(cfg, db, model, k)) for k in finished_folds(cfg, db, model)}
    names = sorted({n for m in per_fold.values() for n in m})
    stats = {}
    for name in names:
        s = mean_std(m[name] for m in per_fold.values() if name in m)
        stats[name] = {"mean": s["mean"], "std": s["std"] if math.isfinite(s["std"]) else None, "n": s["n"]}
    return {"database": db, "model": model, "folds": sorted(per_fold), "n_folds_done": len(per_fold),
            "metrics": stats}


def log_parent(cfg: dict, db: str, model: str) -> dict:
    """Re-log the folds of (db, model) (cheap when unchanged) and put mean/std on the parent run."""
    from mlflow.entities import Metric

    stats = fold_statistics(cfg, db, model)
    client = client_for(cfg)
    for fold in stats["folds"]:
        sync_fold(client, cfg, db, model, fold)
    exp_id = ensure_experiment(client, cfg, db)
    parent = ensure_parent(client, exp_id, db, model, cfg["profile"])
    now = int(time.time() * 1000)
    metrics = [Metric("n_folds_done", float(stats["n_folds_done"]), now, 0)]
    for name, s in stats["metrics"].items():
        metrics.append(Metric(f"{name}_mean", s["mean"], now, 0))
        if s["std"] is not None:           # one fold has no spread: no _std rather than a false 0
            metrics.append(Metric(f"{name}_std", s["std"], now, 0))
    _log_batches(client, parent, metrics, [])
    retry(client.set_tag, parent, "folds", ",".join(map(str, stats["folds"])))
    stats["parent_run_id"] = parent
    return stats


def init_store(cfg: dict) -> dict:
    """Create the store, one experiment per database and the parent runs, serially."""
    client = client_for(cfg)
    out = {}
    for db in cfg["databases"]:
        exp_id = ensure_experiment(client, cfg, db)
        out[db] = {m: ensure_parent(client, exp_id, db, m, cfg["profile"])
                   for m in list(cfg["models"]) + ["judge"]}
    return out


def sync_all(cfg: dict) -> dict:
    """Re-log every finished result under paths.results; existing up-to-date runs are kept."""
    client = client_for(cfg)
    counts = {"created": 0, "replaced": 0, "unchanged": 0}
    for db in DATABASES:
        for model in TRACKED_MODELS:
            folds = finished_folds(cfg, db, model)
            for fold in folds:
                counts[sync_fold(client, cfg, db, model, fold)] += 1
            if folds:
                log_parent(cfg, db, model)
    return counts


def _write_marker(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


def _warn(what: str, e: Exception) -> str:
    msg = f"{type(e).__name__}: {e}"
    print(f"fersnet track: warning: {what} failed ({msg}); the results on disk are complete; "
          "re-log them later with `fersnet track --sync`", file=sys.stderr)
    return msg


def _store_error(cfg: dict, e: Exception) -> TrackingError:
    return TrackingError(f"MLflow store {tracking_uri(cfg)} is not usable ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); if it is corrupt, move "
                         "mlflow.db aside and run `fersnet track --sync` to rebuild it from results/")


def main(cfg: dict, args) -> dict:
    """`fersnet track --init | --sync | --parent DB MODEL`.

    --init and --parent are workflow steps: they always write their marker file, and an MLflow
    failure there is a warning, never a lost or blocked result. --sync is asked for by a person,
    so a store that cannot be used is an error.
    """
    enabled = cfg["mlflow"]["enabled"]
    if args.sync:
        if not enabled:
            raise TrackingError("params: `mlflow.enabled` is false; nothing to sync")
        try:
            return sync_all(cfg)
        except FersnetError:
            raise
        except Exception as e:  # noqa: BLE001 - any store failure, phrased for the user
            raise _store_error(cfg, e) from None
    if args.init:
        payload = {"enabled": enabled, "uri": tracking_uri(cfg) if enabled else None,
                   "profile": cfg["profile"]}
        if enabled:
            try:
                payload["parents"] = init_store(cfg)
            except Exception as e:  # noqa: BLE001
                payload["error"] = _warn("MLflow --init", e)
        _write_marker(markers.init_marker(cfg), payload)
        return {"marker": str(markers.init_marker(cfg)), "enabled": enabled}
    db, model = args.parent
    if db not in DATABASES or model not in TRACKED_MODELS:
        raise TrackingError(f"--parent {db} {model}: expected a database ({', '.join(DATABASES)}) "
                            f"and a model ({', '.join(TRACKED_MODELS)})")
    if enabled:
        try:
            payload = log_parent(cfg, db, model)
        except FersnetError:
            raise
        except Exception as e:  # noqa: BLE001
            payload = fold_statistics(cfg, db, model)
            payload["error"] = _warn(f"MLflow --parent {db} {model}", e)
    else:
        payload = fold_statistics(cfg, db, model)
    payload["enabled"] = enabled
    _write_marker(markers.parent_marker(cfg, db, model), payload)
    return {"marker": str(markers.parent_marker(cfg, db, model)), "n_folds_done": payload["n_folds_done"]}
