"""The MLflow store: where it is, its writer lock, retries, the client, one experiment per database
and its parent runs, and the one-line error for a store that cannot be used (docs/orchestration.md).

Concurrent jobs share one store. fersnet's own writers of a local store (SQLite or a folder) take
turns through a file lock beside it (`store_lock`), so two jobs never contend inside SQLite and
never log the same fold at once; opening the store and every store call also retry "database is
locked" (another program, e.g. `mlflow ui`, holding it) with jittered backoff for up to
LOCK_WAIT_S seconds. Metrics and params go in batches (MlflowClient.log_batch, `log_batches`).
Experiments are created as classic ML experiments (tag mlflow.experimentKind, so that MLflow's UI
opens on its runs table) with a saved view of the headline columns (`headline_view`, `ui_url`), their
artifacts under <project>/mlruns/<db>.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path

from fersnet import ownership
from fersnet.errors import FersnetError

try:
    import fcntl
except ImportError:               # not POSIX: no store lock; SQLite's locking and the retries remain
    fcntl = None

BATCH_METRICS = 1000          # MLflow's per-request limits for log_batch
BATCH_PARAMS = 100
# How long a store call keeps retrying a locked SQLite database (each try itself waits up to
# SQLite's 5 s), and how long a job waits for its turn at the store lock, before it gives up and
# records the fold as not logged.
LOCK_WAIT_S = 120.0
SYNC_COMMAND = "fersnet track --sync"
# MLflow 3's UI opens an experiment in its GenAI view unless told it is a classic ML experiment
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
SUMMARY_WAIT_S = 15.0     # a summary does not wait for a locked store as long as a job does
# A saved view of the runs table that MLflow's UI (3.15 and later) opens from a URL with
# `?viewStateShareKey=<key>`: an experiment tag `mlflow.sharedViewState.<key>` holding the view as
# JSON. fersnet's shows the headline columns: a parent run's mean and std over its folds, a fold run's
# own value, in the order `fersnet compare` prints them.
VIEW_KEY = "fersnet-headline"
VIEW_TAG = "mlflow.sharedViewState." + VIEW_KEY
VIEW_METRICS = ("accuracy", "balanced_accuracy", "synth/judge_accuracy", "synth/judge_fid", "synth/fid")


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


def local_store(uri: str) -> Path | None:
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
    store = local_store(tracking_uri(cfg))
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


def tag_filter(tags: dict) -> str:
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


def log_batches(client, run_id: str, metrics: list, params: list) -> None:
    for i in range(0, len(params), BATCH_PARAMS):
        retry(client.log_batch, run_id, params=params[i:i + BATCH_PARAMS])
    for i in range(0, len(metrics), BATCH_METRICS):
        retry(client.log_batch, run_id, metrics=metrics[i:i + BATCH_METRICS])


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
                         tags={"database": db, **EXPERIMENT_KIND, VIEW_TAG: headline_view()})
        except Exception:  # noqa: BLE001 - another process created it first
            exp = retry(client.get_experiment_by_name, name)
            if exp is None:
                raise
    for key, value in {**EXPERIMENT_KIND, VIEW_TAG: headline_view()}.items():
        if exp.tags.get(key) != value:       # made before the kind (or the view) was set
            retry(client.set_experiment_tag, exp.experiment_id, key, value)
    return exp.experiment_id


def headline_view() -> str:
    """The runs-table view (VIEW_TAG's value): the headline metric columns in this order, parents'
    mean and std beside the folds' own value. The runs keep MLflow's default order (newest first),
    which keeps each parent's folds nested under it; sorting by a metric would list them apart."""
    columns = []
    for name in VIEW_METRICS:
        columns += [f"metrics.`{name}_mean`", f"metrics.`{name}_std`", f"metrics.`{name}`"]
    columns.append("tags.`profile`")
    return json.dumps({"selectedColumns": columns, "columnOrder": columns,
                       "runListHidden": False, "viewMaximized": False}, separators=(",", ":"))


def ui_url(base: str, experiment_id: str) -> str:
    """The address of an experiment's runs table with the headline view, under the `mlflow ui` at `base`."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}"


def _oldest(runs: list):
    return min(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def ensure_parent(client, exp_id: str, db: str, model: str, profile: str) -> str:
    """The parent run of (db, model, profile); concurrent creators converge on the oldest one."""
    tags = {"kind": "parent", "database": db, "model": model, "profile": profile}
    found = search_all(client, [exp_id], tag_filter(tags))
    if found:
        return _oldest(found).info.run_id
    run = retry(client.create_run, exp_id, run_name=f"{model} ({profile})", tags=tags)
    retry(client.set_terminated, run.info.run_id, "FINISHED")
    found = search_all(client, [exp_id], tag_filter(tags))
    keep = _oldest(found).info.run_id if found else run.info.run_id
    if keep != run.info.run_id:
        retry(client.delete_run, run.info.run_id)
    return keep


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


_HINT = {
    "sync": f"if it is corrupt, move mlflow.db aside and run `{SYNC_COMMAND}` to rebuild it from results/",
    "init": ("nothing was run: make the store usable (a corrupt mlflow.db: move it aside; a locked one: "
             "stop what holds it; its folder must be writable) and run again, or turn tracking off "
             "with `mlflow.enabled: false`"),
}


def store_error(cfg: dict, e: Exception, hint: str = "sync") -> TrackingError:
    """The one-line error for a store that cannot be used (`fersnet track`, `fersnet compare`)."""
    cause = str(e) if isinstance(e, TrackingError) else one_line(e)
    return TrackingError(f"MLflow store {tracking_uri(cfg)} is not usable ({cause}); {_HINT[hint]}")


@contextmanager
def patience(seconds: float):
    """Within the block, store calls and the store lock give up after at most `seconds`."""
    global LOCK_WAIT_S
    before, LOCK_WAIT_S = LOCK_WAIT_S, min(LOCK_WAIT_S, seconds)
    try:
        yield
    finally:
        LOCK_WAIT_S = before
