"""One fold run in MLflow: what a fold folder's results become (metrics, params, artifacts, tags,
stamp), logging it under the store lock, and the records of folds that could not be logged.

A fold run per (seed, fold), named <model>/seed<s>/fold<k>, tags kind=fold, database, model, seed,
fold, profile, git_commit, mlflow.parentRunId, and `stamp` (hash of the fold's result files) that
makes re-logging idempotent; its start and end are the job's own (config.json's `started` plus
metrics.json's `seconds`), so MLflow's duration is the job's time; per-epoch history under `curve/`
(so that the final `accuracy` is the first metric listed). The files under results/ are the truth
(docs/architecture.md): a run can be logged again from them at any time.

A fold that could not be logged leaves a small record (fersnet.paths.tracking_failure), removed
when the fold is logged.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from fersnet import ownership, paths, provenance
from fersnet.errors import DiskFull, FersnetError
from fersnet.tracking.store import (SYNC_COMMAND, client_for, ensure_experiment, ensure_parent, log_batches,
                                    one_line, retry, search_all, store_lock, tag_filter, tracking_uri)

PARAM_VALUE_MAX = 6000
CURVE = "curve/"              # per-epoch history metrics: curve/<history.csv column>


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


def flat_params(tree) -> dict:
    """A config tree as MLflow params: provenance.flatten's keys, without its empty sections (an
    empty dict is not a setting)."""
    return {k: v for k, v in provenance.flatten(tree).items() if v != {}}


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
        for key, value in provenance.flatten(_read_json(scores_path), sep="/").items():
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


def job_config(folder: Path) -> dict:
    return _read_json(folder / paths.CONFIG) if (folder / paths.CONFIG).is_file() else {}


def fold_profile(cfg: dict, job_cfg: dict) -> str:
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
    job_cfg = job_config(folder)
    job = job_cfg.get("job", {}) if isinstance(job_cfg, dict) else {}
    profile = fold_profile(cfg, job_cfg)
    stamp = result_stamp(folder)
    exp_id = ensure_experiment(client, cfg, db)
    parent = ensure_parent(client, exp_id, db, model, profile)
    identity = {"kind": "fold", "database": db, "model": model, "seed": str(seed), "fold": str(fold),
                "profile": profile}
    # the fold's runs of every seed (one search); this seed's and those without a seed tag are ours
    same_fold = search_all(client, [exp_id], tag_filter({k: v for k, v in identity.items() if k != "seed"}))
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
    commit = str(job.get("git_commit") or provenance.code_version()["git_commit"] or "unknown")
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
    params = [Param(k, str(v)[:PARAM_VALUE_MAX]) for k, v in sorted(flat_params(job_cfg).items())
              if k != "profiles" and not k.startswith("profiles.")]
    metrics = [Metric(k, v, now, s) for k, v, s in history_metrics(folder)]
    metrics += [Metric(k, v, now, 0) for k, v in sorted(final_metrics(folder).items())]
    log_batches(client, run_id, metrics, params)
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


def write_record(path: Path, payload: dict) -> None:
    ownership.write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str), ownership.step("track"))


def record_failure(cfg: dict, db: str, model: str, fold: int | None, step: str, e: BaseException,
                   seed: int | None = None) -> Path | None:
    """Leave the record of a fold run of `seed` (default the job's; fold None: the parent run of
    (db, model), over all seeds) that MLflow did not take (paths.tracking_failure). Never raises."""
    seed = None if fold is None else _seed(cfg, seed)
    path = paths.tracking_failure(cfg, db, model, fold, seed)
    payload = {"database": db, "model": model, "seed": seed, "fold": fold, "step": step, "uri": tracking_uri(cfg),
               "error": one_line(e), "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "relog": SYNC_COMMAND}
    try:
        write_record(path, payload)
    except (OSError, DiskFull) as err:
        print(f"fersnet: warning: could not record the MLflow failure in {path} "
              f"({getattr(err, 'strerror', None) or err})", file=sys.stderr)
        return None
    return path


def clear_failure(cfg: dict, db: str, model: str, fold: int | None, seed: int | None = None) -> None:
    """Remove the fold run's (or parent run's) failure record: it has been logged now."""
    try:
        paths.tracking_failure(cfg, db, model, fold, None if fold is None else _seed(cfg, seed)).unlink(missing_ok=True)
    except OSError:
        pass


def recorded_failures(cfg: dict) -> list[dict]:
    """The failure records present, oldest first; an unreadable record still counts (by its name)."""
    folder = paths.tracking_failures_dir(cfg)
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
    """(seed, fold) of every finished fold run of (db, model) (its metrics.json exists): the folds
    range(n_folds) of the seeds of params `run_seeds`, as the reports count them."""
    return sorted((int(seed), k) for seed in cfg["run_seeds"] for k in range(cfg["n_folds"])
                  if (fold_folder(cfg, db, model, k, seed) / paths.METRICS).is_file())
