"""MLflow mirror of the results on disk: `fersnet track --init | --sync | --parent DB MODEL` and `log_job`.

The files under results/ are the truth (docs/architecture.md); MLflow is a view of them that can be
rebuilt at any time with `--sync`. Layout (docs/orchestration.md):
  - one experiment per database, named <mlflow.experiment_prefix><db> (`fersnet/ckplus`), created as a
    classic ML experiment (tag mlflow.experimentKind, so that MLflow's UI opens on its runs table),
    artifacts under <project>/mlruns/<db>;
  - one parent run per (database, model), tags kind=parent, database, model, profile, and the seeds
    and folds it summarises; params: the settings the model's jobs read (provenance.job_params); metrics:
    mean, std over folds and std over seeds of the headline metrics (PARENT_METRICS) over all the
    (seed, fold) runs of params `seeds` (seed_fold_stats), and the jobs' time and memory;
  - one child run per (seed, fold), named <model>/seed<s>/fold<k>, tags kind=fold, database, model,
    seed, fold, profile, git_commit, mlflow.parentRunId, and `stamp` (hash of the fold's result
    files) that makes re-logging idempotent; its start and end are the job's own (config.json's
    `started` plus metrics.json's `seconds`), so MLflow's duration is the job's time; per-epoch
    history under `curve/` (so that the final `accuracy` is the first metric listed).
Concurrent jobs share one store. fersnet's own writers of a local store (SQLite or a folder) take
turns through a file lock beside it (`store_lock`), so two jobs never contend inside SQLite and
never log the same fold at once; opening the store and every store call also retry "database is
locked" (another program, e.g. `mlflow ui`, holding it) with jittered backoff for up to
LOCK_WAIT_S seconds. Metrics and params go in batches (MlflowClient.log_batch).

A fold that could not be logged leaves a small record in results/_workflow/tracking_failed/
(removed when the fold is logged); `status`/`summary_line` count what the store holds of the
results on disk, for the end of a workflow run and `fersnet compare`.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import json
import logging
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from fersnet import ownership, paths
from fersnet import catalog
from fersnet.errors import FersnetError
from fersnet.tracking import benchmarks, markers

try:
    import fcntl
except ImportError:               # not POSIX: no store lock; SQLite's locking and the retries remain
    fcntl = None

BATCH_METRICS = 1000          # MLflow's per-request limits for log_batch
BATCH_PARAMS = 100
PARAM_VALUE_MAX = 6000
# How long a store call keeps retrying a locked SQLite database (each try itself waits up to
# SQLite's 5 s), and how long a job waits for its turn at the store lock, before it gives up and
# records the fold as not logged.
LOCK_WAIT_S = 120.0
SYNC_COMMAND = "fersnet track --sync"
# MLflow 3's UI opens an experiment in its GenAI view unless told it is a classic ML experiment
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# The fold metrics a reader compares first, in order: `fersnet compare`'s columns. A fold's FID/KID/judge
# FD are logged unsized (their N differs by fold); synth/n_synthetic is that N.
HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "synth/judge_accuracy", "synth/judge_fid",
                    "synth/fid", "synth/kid", "synth/ssim", "synth/psnr", "synth/n_synthetic")
# what a parent run summarises (mean, _std, _seed_std): those, and the job's training time
PARENT_METRICS = HEADLINE_METRICS + ("seconds",)
CURVE = "curve/"              # per-epoch history metrics: curve/<history.csv column>


class TrackingError(FersnetError):
    """The MLflow store cannot be used (unreachable, corrupt); the results on disk are unaffected."""


class _NoSqlTraceback(logging.Filter):
    """MLflow logs a store's SQL error (a corrupt or locked SQLite file) with its whole traceback, then
    raises it; fersnet reports that error in one line (store_error, TrackingError), so the log is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


logging.getLogger("mlflow.store.db.utils").addFilter(_NoSqlTraceback())


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
    """Call an MLflow store function, retrying SQLite lock contention with jittered backoff
    until LOCK_WAIT_S seconds have passed (then the lock error is raised)."""
    delay, deadline = 0.05, time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - MLflow wraps sqlite errors in several types
            if not _is_lock_error(e) or time.monotonic() >= deadline:
                raise
            time.sleep(delay * (1.0 + random.random()))
            delay = min(delay * 2.0, 2.0)


def _local_store(uri: str) -> Path | None:
    """The file (SQLite) or folder (file: URI) of a store on this file system; None for a server."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):])
    if uri.startswith("file:"):
        from urllib.parse import unquote, urlparse
        return Path(unquote(urlparse(uri).path))
    return None


_held = {"depth": 0}      # store_lock is re-entrant within a process (flock is per open file)


@contextmanager
def store_lock(cfg: dict):
    """Hold the store's writer lock: a file lock on `.<store name>.lock` beside a local store.

    fersnet's processes log one at a time, so a job never waits inside SQLite for another job
    (whose 5 s timeout gave up under load) and two processes never log the same fold at once
    (which left duplicate runs, or a run deleted under the other's feet). The lock goes with the
    process: a killed job never leaves it held. A server store (http) serialises by itself.
    """
    store = _local_store(tracking_uri(cfg))
    if store is None or _held["depth"] or fcntl is None:
        _held["depth"] += 1
        try:
            yield
        finally:
            _held["depth"] -= 1
        return
    lock = store.with_name(f".{store.name}.lock")
    try:
        ownership.create_dirs(store.parent, ownership.step("track"))
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise TrackingError(f"MLflow store {tracking_uri(cfg)}: cannot create its lock file {lock} "
                            f"({e.strerror or e}); the store must lie in a writable folder") from None
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    raise TrackingError(f"MLflow store {tracking_uri(cfg)}: another fersnet process held "
                                        f"{lock} for more than {LOCK_WAIT_S:.0f} s") from None
                time.sleep(0.05 + 0.1 * random.random())
        _held["depth"] += 1
        try:
            yield
        finally:
            _held["depth"] -= 1
    finally:
        os.close(fd)                   # releases the lock


def client_for(cfg: dict):
    """An MlflowClient on the configured store (the SQLite file's folder is created).

    MlflowClient opens the store at once (schema check; the schema itself on first use); that is
    retried like every store call, so a store locked for longer than SQLite's 5 s is waited for.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        ownership.create_dirs(Path(uri[len("sqlite:///"):]).parent, ownership.step("track"))
    return retry(MlflowClient, tracking_uri=uri)


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


def experiment_name(cfg: dict, db: str) -> str:
    """The MLflow experiment of database `db`: `<mlflow.experiment_prefix><db>`, e.g. fersnet/ckplus."""
    return f"{cfg['mlflow'].get('experiment_prefix', '')}{db}"


def ensure_experiment(client, cfg: dict, db: str) -> str:
    """The experiment of one database (created with its artifact location on first use), a classic
    ML experiment (EXPERIMENT_KIND)."""
    name = experiment_name(cfg, db)
    exp = retry(client.get_experiment_by_name, name)
    if exp is None:
        try:
            return retry(client.create_experiment, name,
                         artifact_location=artifact_location(tracking_uri(cfg), db),
                         tags={"database": db, **EXPERIMENT_KIND})
        except Exception:  # noqa: BLE001 - another process created it first
            exp = retry(client.get_experiment_by_name, name)
            if exp is None:
                raise
    for key, value in EXPERIMENT_KIND.items():
        if exp.tags.get(key) != value:       # made before the kind was set
            retry(client.set_experiment_tag, exp.experiment_id, key, value)
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


def _seed(cfg: dict, seed: int | None) -> int:
    """The seed of a fold run: `seed`, else the job's (cfg["seed"], fersnet.config.with_seed)."""
    return int(cfg["seed"] if seed is None else seed)


def fold_folder(cfg: dict, db: str, model: str, fold: int, seed: int | None = None) -> Path:
    if model == "judge":
        return paths.judge_dir(cfg, db, fold, _seed(cfg, seed))
    return paths.run_dir(cfg, db, model, fold, _seed(cfg, seed))


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
                    rows.append((metric_name(CURVE + key), v, int(epoch)))
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


def _log_artifacts(client, run_id: str, folder: Path, metrics: dict, checkpoint: bool = False) -> None:
    for name in (paths.METRICS, paths.CONFIG, paths.HISTORY):
        if (folder / name).is_file():
            retry(client.log_artifact, run_id, str(folder / name))
    if checkpoint:
        # mlflow.log_checkpoints: the trained networks of the fold (with optimizer state, as
        # training resumes from it); ~1 GB per fold at paper scale, hence off by default
        logged = (folder / paths.CHECKPOINT).is_file()
        if logged:
            retry(client.log_artifact, run_id, str(folder / paths.CHECKPOINT), "checkpoint")
        retry(client.set_tag, run_id, "checkpoint", "logged" if logged else "absent")
    synthesis = folder / "synthesis"
    for name in (paths.SCORES, paths.SYNTH_GRID):
        if (synthesis / name).is_file():
            retry(client.log_artifact, run_id, str(synthesis / name), "synthesis")
    with tempfile.TemporaryDirectory() as tmp:
        confusion = _confusion_csv(metrics, Path(tmp))
        if confusion is not None:
            retry(client.log_artifact, run_id, str(confusion))


def _job_config(folder: Path) -> dict:
    return _read_json(folder / paths.CONFIG) if (folder / paths.CONFIG).is_file() else {}


def _fold_profile(cfg: dict, job_cfg: dict) -> str:
    """The profile a fold run is filed under: the one its result was made with."""
    return str((job_cfg.get("profile") if isinstance(job_cfg, dict) else None) or cfg["profile"])


def sync_fold(client, cfg: dict, db: str, model: str, fold: int, seed: int | None = None) -> str:
    """Mirror one finished fold folder (of `seed`, default the job's) into MLflow; returns created,
    replaced, unchanged or missing.

    A run whose `stamp` tag matches the files on disk is left alone (idempotent); otherwise older
    runs of the same (db, model, seed, fold, profile) are deleted and one fresh run is logged, with
    the stamp set last so that an interrupted logging is redone next time. A run of the fold logged
    before runs had a seed (no `seed` tag; its results lay in results/<db>/<model>/fold<k>) is
    replaced too; the runs of the fold's other seeds are kept.
    """
    from mlflow.entities import Metric, Param

    seed = _seed(cfg, seed)
    folder = fold_folder(cfg, db, model, fold, seed)
    if not (folder / paths.METRICS).is_file():
        return "missing"
    job_cfg = _job_config(folder)
    job = job_cfg.get("job", {}) if isinstance(job_cfg, dict) else {}
    profile = _fold_profile(cfg, job_cfg)
    stamp = result_stamp(folder)
    exp_id = ensure_experiment(client, cfg, db)
    parent = ensure_parent(client, exp_id, db, model, profile)
    identity = {"kind": "fold", "database": db, "model": model, "seed": str(seed), "fold": str(fold),
                "profile": profile}
    # the fold's runs of every seed (one search); this seed's and those without a seed tag are ours
    same_fold = search_all(client, [exp_id], _filter({k: v for k, v in identity.items() if k != "seed"}))
    existing = [r for r in same_fold if r.data.tags.get("seed", str(seed)) == str(seed)]
    checkpoint = bool(cfg["mlflow"].get("log_checkpoints", False))
    # a run logged before mlflow.log_checkpoints was turned on is logged again, with the checkpoint
    current = [r for r in existing if r.data.tags.get("stamp") == stamp
               and (not checkpoint or "checkpoint" in r.data.tags)]
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
    result_seconds = _finite(result.get("seconds"))
    start, end = job_times(job.get("started"), result_seconds)
    run_id = retry(client.create_run, exp_id, run_name=f"{model}/seed{seed}/fold{fold}", tags=tags,
                   start_time=start).info.run_id
    now = int(time.time() * 1000)
    params = [Param(k, str(v)[:PARAM_VALUE_MAX]) for k, v in sorted(_flatten(job_cfg).items())
              if k != "profiles" and not k.startswith("profiles.")]
    metrics = [Metric(k, v, now, s) for k, v, s in history_metrics(folder)]
    metrics += [Metric(k, v, now, 0) for k, v in sorted(final_metrics(folder).items())]
    _log_batches(client, run_id, metrics, params)
    _log_artifacts(client, run_id, folder, _read_json(folder / paths.METRICS), checkpoint)
    retry(client.set_tag, run_id, "stamp", stamp)
    retry(client.set_terminated, run_id, "FINISHED", end_time=end)
    return "replaced" if existing else "created"


def job_times(started, seconds) -> tuple[int | None, int | None]:
    """(start, end) in ms since the epoch of a job that began at `started` (ISO 8601, config.json's
    job.started) and ran `seconds` (metrics.json); (None, None), i.e. the logging time, when either is
    unknown."""
    try:
        begin = datetime.fromisoformat(str(started))
    except ValueError:
        return None, None
    if seconds is None:
        return None, None
    if begin.tzinfo is None:
        begin = begin.replace(tzinfo=timezone.utc)
    start = int(begin.timestamp() * 1000)
    return start, start + int(round(seconds * 1000))


def _job_target(cfg: dict, verb: str, args) -> tuple[str, str, int, int]:
    """(db, model, fold, seed) of a finished job; its seed is the job's cfg["seed"] (--seed)."""
    model = "judge" if verb == "judge" else args.model
    return args.db, model, int(args.fold), _seed(cfg, None)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


def record_failure(cfg: dict, db: str, model: str, fold: int | None, step: str, e: BaseException,
                   seed: int | None = None) -> Path | None:
    """Leave the record of a fold run of `seed` (default the job's; fold None: the parent run of
    (db, model), over all seeds) that MLflow did not take:
    results/_workflow/tracking_failed/<db>_<model>_seed<s>_fold<k>.json. Never raises."""
    seed = None if fold is None else _seed(cfg, seed)
    path = markers.tracking_failure(cfg, db, model, fold, seed)
    payload = {"database": db, "model": model, "seed": seed, "fold": fold, "step": step, "uri": tracking_uri(cfg),
               "error": _one_line(e), "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "relog": SYNC_COMMAND}
    try:
        _write_marker(path, payload)
    except OSError as err:
        print(f"fersnet: warning: could not record the MLflow failure in {path} ({err.strerror or err})",
              file=sys.stderr)
        return None
    return path


def clear_failure(cfg: dict, db: str, model: str, fold: int | None, seed: int | None = None) -> None:
    """Remove the fold run's (or parent run's) failure record: it has been logged now."""
    try:
        markers.tracking_failure(cfg, db, model, fold, None if fold is None else _seed(cfg, seed)).unlink(missing_ok=True)
    except OSError:
        pass


def recorded_failures(cfg: dict) -> list[dict]:
    """The failure records present, oldest first; an unreadable record still counts (by its name)."""
    folder = markers.tracking_failures_dir(cfg)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            rec = {"error": "unreadable failure record"}
        out.append(dict(rec, file=str(path)))
    return sorted(out, key=lambda r: str(r.get("recorded", "")))


def log_fold(cfg: dict, db: str, model: str, fold: int, step: str, seed: int | None = None) -> str:
    """sync_fold under the store lock, with its outcome recorded: a failure leaves a record (and
    is raised), a success removes the fold's record. `step` names who logged (train, sync, ...);
    `seed` defaults to the job's (cfg["seed"])."""
    seed = _seed(cfg, seed)
    try:
        with store_lock(cfg):
            status = sync_fold(client_for(cfg), cfg, db, model, fold, seed)
    except Exception as e:
        record_failure(cfg, db, model, fold, step, e, seed)
        raise
    clear_failure(cfg, db, model, fold, seed)
    return status


def log_job(cfg: dict, verb: str, args) -> str:
    """Called by the CLI after a successful train, judge or score job: mirror its fold folder.

    Any failure is recorded (record_failure) and propagates to the CLI, which prints it as a
    warning (the results stay on disk). With `mlflow.log_jobs: false` nothing is imported or
    logged here: the workflow's `track --parent` step logs the folds of each (db, model) in one
    process instead.
    """
    if not cfg["mlflow"]["enabled"]:
        return "disabled"
    if not cfg["mlflow"].get("log_jobs", True):
        return "deferred"
    db, model, fold, seed = _job_target(cfg, verb, args)
    return log_fold(cfg, db, model, fold, verb, seed)


def finished_folds(cfg: dict, db: str, model: str) -> list[tuple[int, int]]:
    """(seed, fold) of every finished fold run of (db, model) (its metrics.json exists) over the
    seeds of params `seeds`, from the results folder."""
    out = []
    for seed in cfg["seeds"]:
        base = fold_folder(cfg, db, model, 0, seed).parent
        if not base.is_dir():
            continue
        folds = [int(p.name[4:]) for p in base.glob("fold*") if p.name[4:].isdigit()]
        out += [(int(seed), k) for k in sorted(folds)
                if (fold_folder(cfg, db, model, k, seed) / paths.METRICS).is_file()]
    return sorted(out)


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
    finished (seed, fold) runs of (db, model), for the parent run and its marker."""
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
            _log_batches(client, parent, metrics, [])
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
    from fersnet import provenance
    verb = "judge" if model == "judge" else "train"
    flat = _flatten(provenance.job_params(cfg, verb, None if model == "judge" else model))
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
        for run in search_all(client, [exp_id], _filter({"kind": "fold", "database": db, "model": model,
                                                         "profile": cfg["profile"]})):
            retry(client.set_tag, run.info.run_id, "mlflow.parentRunId", new)
        retry(client.delete_run, parent)
        parent, have = new, {}
    missing = [Param(k, v) for k, v in want.items() if k not in have]
    _log_batches(client, parent, [], missing)
    return parent


def init_store(cfg: dict) -> dict:
    """Create the store, one experiment per database and the parent runs, serially."""
    with store_lock(cfg):
        client = client_for(cfg)
        out = {}
        for db in cfg["databases"]:
            exp_id = ensure_experiment(client, cfg, db)
            out[db] = {m: ensure_parent(client, exp_id, db, m, cfg["profile"])
                       for m in catalog.tracked_models(cfg["models"])}
    return out


def _on_disk(cfg: dict) -> list[tuple[str, str, int, int]]:
    """(db, model, seed, fold) of every finished result under paths.results, seeds of params `seeds`."""
    return [(db, model, seed, fold) for db in catalog.database_keys() for model in catalog.tracked_models()
            for seed, fold in finished_folds(cfg, db, model)]


def sync_all(cfg: dict) -> dict:
    """Re-log every finished result under paths.results; existing up-to-date runs are kept.

    Stops at the first fold the store does not take (its failure is recorded); records of
    results no longer on disk are dropped.
    """
    counts = {"created": 0, "replaced": 0, "unchanged": 0}
    results = _on_disk(cfg)
    for db in catalog.database_keys():
        for model in catalog.tracked_models():
            runs = [(s, k) for d, m, s, k in results if (d, m) == (db, model)]
            for seed, fold in runs:
                counts[log_fold(cfg, db, model, fold, "sync", seed)] += 1
            if runs:
                log_parent(cfg, db, model)
    present = set(results) | {(d, m, None, None) for d, m, _, _ in results}
    for rec in recorded_failures(cfg):
        if (rec.get("database"), rec.get("model"), rec.get("seed"), rec.get("fold")) not in present:
            Path(rec["file"]).unlink(missing_ok=True)
    return counts


def _write_marker(path: Path, payload: dict) -> None:
    ownership.create_dirs(path.parent, ownership.step("track"))
    tmp = ownership.temp_path(path)
    try:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _warn(what: str, e: Exception) -> str:
    msg = f"{type(e).__name__}: {e}"
    print(f"fersnet track: warning: {what} failed ({msg}); the results on disk are complete; "
          f"re-log them later with `{SYNC_COMMAND}`", file=sys.stderr)
    return msg


_HINT = {
    "sync": f"if it is corrupt, move mlflow.db aside and run `{SYNC_COMMAND}` to rebuild it from results/",
    "init": ("nothing was run: make the store usable (a corrupt mlflow.db: move it aside; a locked one: "
             "stop what holds it; its folder must be writable) and run again, or turn tracking off "
             "with `mlflow.enabled: false`"),
}


def store_error(cfg: dict, e: Exception, hint: str = "sync") -> TrackingError:
    """The one-line error for a store that cannot be used (`fersnet track`, `fersnet compare`)."""
    cause = str(e) if isinstance(e, TrackingError) else _one_line(e)
    return TrackingError(f"MLflow store {tracking_uri(cfg)} is not usable ({cause}); {_HINT[hint]}")


def main(cfg: dict, args) -> dict:
    """`fersnet track --init | --sync | --parent DB MODEL`.

    --init runs before the workflow's fan-out: a store that cannot be used is an error (no marker,
    so no job starts with tracking silently broken). --parent is a workflow step after the folds:
    an MLflow failure there is a warning and a failure record, never a lost or blocked result, and
    it writes its marker. --sync is asked for by a person, so a store that cannot be used is an error.
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
            raise store_error(cfg, e) from None
    if args.init:
        marker = markers.init_marker(cfg)
        payload = {"enabled": enabled, "uri": tracking_uri(cfg) if enabled else None,
                   "profile": cfg["profile"]}
        if enabled:
            try:
                payload["parents"] = init_store(cfg)
            except Exception as e:  # noqa: BLE001 - any store failure, phrased for the user
                marker.unlink(missing_ok=True)         # an older marker must not vouch for it either
                raise store_error(cfg, e, "init") from None
        _write_marker(marker, payload)
        return {"marker": str(marker), "enabled": enabled}
    db, model = args.parent
    if db not in catalog.database_keys() or model not in catalog.tracked_models():
        raise TrackingError(f"--parent {db} {model}: expected a database ({', '.join(catalog.database_keys())}) "
                            f"and a model ({', '.join(catalog.tracked_models())})")
    if enabled:
        try:
            payload = log_parent(cfg, db, model)
        except TrackingError as e:             # the store (lock) is not usable: recorded, reported
            payload = fold_statistics(cfg, db, model)
            payload["error"] = _warn(f"MLflow --parent {db} {model}", e)
        except FersnetError:
            raise
        except Exception as e:  # noqa: BLE001
            payload = fold_statistics(cfg, db, model)
            payload["error"] = _warn(f"MLflow --parent {db} {model}", e)
    else:
        payload = fold_statistics(cfg, db, model)
    payload["enabled"] = enabled
    _write_marker(markers.parent_marker(cfg, db, model), payload)
    return {"marker": str(markers.parent_marker(cfg, db, model)), "n_folds_done": payload["n_folds_done"],
            "n_runs_done": payload["n_runs_done"]}


# --- what the store holds of the results on disk (end of a workflow run, `fersnet compare`) -------
SUMMARY_WAIT_S = 15.0     # a summary does not wait for a locked store as long as a job does


@contextmanager
def _patience(seconds: float):
    global LOCK_WAIT_S
    before, LOCK_WAIT_S = LOCK_WAIT_S, min(LOCK_WAIT_S, seconds)
    try:
        yield
    finally:
        LOCK_WAIT_S = before


def _fold_name(db: str, model: str, fold=None, seed=None) -> str:
    """ckplus/fersnet/seed0/fold3 (paths.run_label); a parent run: ckplus/fersnet."""
    if fold is None:
        return paths.run_label(db, model)
    return paths.run_label(db, model, fold, seed) if isinstance(seed, int) else paths.run_label(db, model, fold)


def _logged(cfg: dict, results: list[tuple[str, str, int, int]]) -> set[tuple[str, str, int, int]]:
    """The results whose current files have a fold run in the store (same stamp); an absent
    store holds nothing (and is not created here)."""
    store = _local_store(tracking_uri(cfg))
    if store is not None and not store.exists():
        return set()
    client = client_for(cfg)
    logged = set()
    for db in sorted({d for d, _, _, _ in results}):
        exp = retry(client.get_experiment_by_name, experiment_name(cfg, db))
        if exp is None:
            continue
        runs = search_all(client, [exp.experiment_id], "tags.kind = 'fold'")
        have = {tuple(r.data.tags.get(k) for k in ("model", "seed", "fold", "profile", "stamp")) for r in runs}
        for d, model, seed, fold in results:
            if d != db:
                continue
            folder = fold_folder(cfg, db, model, fold, seed)
            key = (model, str(seed), str(fold), _fold_profile(cfg, _job_config(folder)), result_stamp(folder))
            if key in have:
                logged.add((db, model, seed, fold))
    return logged


def status(cfg: dict) -> dict:
    """What MLflow holds of the fold results on disk.

    Returns enabled, uri, total (fold results on disk), logged (how many have an up-to-date run;
    None when the store cannot be read), missing (names of those without), failures (the failure
    records, see record_failure), parents_failed (names) and error (why the store could not be read).
    """
    enabled = bool(cfg["mlflow"]["enabled"])
    out = {"enabled": enabled, "uri": tracking_uri(cfg) if enabled else None, "total": 0, "logged": 0,
           "missing": [], "failures": [], "parents_failed": [], "error": None}
    if not enabled:
        return out
    results = _on_disk(cfg)
    records = recorded_failures(cfg)
    out["total"] = len(results)
    out["failures"] = [r for r in records if r.get("fold") is not None]
    out["parents_failed"] = [_fold_name(r.get("database"), r.get("model"), None)
                             for r in records if r.get("fold") is None]
    try:
        with _patience(SUMMARY_WAIT_S):
            logged = _logged(cfg, results)
    except Exception as e:  # noqa: BLE001 - any store failure: say so, count from the records
        out["logged"], out["error"] = None, _one_line(e)
        out["missing"] = [_fold_name(r.get("database"), r.get("model"), r.get("fold"), r.get("seed"))
                          for r in out["failures"]]
        return out
    out["logged"] = len(logged)
    out["missing"] = [_fold_name(db, model, fold, seed) for db, model, seed, fold in results
                      if (db, model, seed, fold) not in logged]
    return out


def summary_line(st: dict) -> str:
    """One line for a researcher: how many fold runs are logged, how many not, and the command
    that re-logs them."""
    if not st["enabled"]:
        return "MLflow: tracking is off (`mlflow.enabled: false`); no runs logged"
    def names(items):
        return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
    errors = [r.get("error") for r in st["failures"]
              if _fold_name(r.get("database"), r.get("model"), r.get("fold"), r.get("seed")) in st["missing"]]
    reason = f": {errors[-1]}" if errors else ""          # the latest recorded error among them
    if st["logged"] is None:
        return (f"MLflow: the store {st['uri']} cannot be read ({st['error']}); {st['total']} fold results "
                f"on disk, {len(st['missing'])} recorded as not logged"
                + (f" ({names(st['missing'])}{reason})" if st["missing"] else "")
                + f"; re-log them with `{SYNC_COMMAND}` once the store is usable")
    if not st["total"] and not st["parents_failed"]:
        return f"MLflow: no fold results on disk yet ({st['uri']})"
    line = f"MLflow: {st['logged']} of {st['total']} fold runs logged"
    parents = f"; parent runs not updated: {names(st['parents_failed'])}" if st["parents_failed"] else ""
    if not st["missing"] and not parents:
        return line + f", none failed ({st['uri']})"
    if st["missing"]:
        line += f", {len(st['missing'])} not logged ({names(st['missing'])}{reason})"
    return line + parents + f"; re-log them with `{SYNC_COMMAND}`"


def workflow_summary(cfg: dict, out=None) -> str:
    """Print the summary line (stderr); for the Snakefile's onsuccess/onerror, so it never raises."""
    try:
        line = summary_line(status(cfg))
    except Exception as e:  # noqa: BLE001 - the end of a run must not fail on its summary
        line = f"MLflow: no summary ({_one_line(e)}); `{SYNC_COMMAND}` re-logs every result on disk"
    print(line, file=out or sys.stderr, flush=True)
    return line
