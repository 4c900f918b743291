"""`fersnet track --init | --sync | --parent DB MODEL`, and what the store holds of the results on disk.

The files under results/ are the truth (docs/architecture.md); MLflow is a view of them that can be
rebuilt at any time with `--sync`. Layout (docs/orchestration.md): one experiment per database,
named <mlflow.experiment_prefix><db> (`fersnet/ckplus`); one parent run per (database, model)
(parents.py) over one child run per (seed, fold) (folds.py); the store, its lock and retries in
store.py. `status`/`summary_line` count what the store holds of the results on disk, for the end
of a workflow run and `fersnet compare`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from fersnet import catalog, paths
from fersnet.errors import FersnetError
from fersnet.tracking.folds import (finished_folds, fold_folder, fold_profile, job_config, log_fold,
                                    recorded_failures, result_stamp, write_record)
from fersnet.tracking.parents import fold_statistics, log_parent
from fersnet.tracking.store import (SUMMARY_WAIT_S, SYNC_COMMAND, TrackingError, client_for, ensure_experiment,
                                    ensure_parent, experiment_name, local_store, one_line, patience, retry,
                                    search_all, store_error, store_lock, tracking_uri)

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
    """(db, model, seed, fold) of every finished result under paths.results, seeds of params `run_seeds`."""
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


def _warn(what: str, e: Exception) -> str:
    msg = f"{type(e).__name__}: {e}"
    print(f"fersnet track: warning: {what} failed ({msg}); the results on disk are complete; "
          f"re-log them later with `{SYNC_COMMAND}`", file=sys.stderr)
    return msg


def main(cfg: dict, args) -> dict:
    """`fersnet track --init | --sync | --parent DB MODEL`.

    --init runs before the workflow's fan-out: a store that cannot be used is an error (no record,
    so no job starts with tracking silently broken). --parent is a workflow step after the folds:
    an MLflow failure there is a warning and a failure record, never a lost or blocked result, and
    it writes its record. --sync is asked for by a person, so a store that cannot be used is an error.
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
        record = paths.mlflow_init_record(cfg)
        payload = {"enabled": enabled, "uri": tracking_uri(cfg) if enabled else None,
                   "profile": cfg["profile"]}
        if enabled:
            try:
                payload["parents"] = init_store(cfg)
            except Exception as e:  # noqa: BLE001 - any store failure, phrased for the user
                record.unlink(missing_ok=True)         # an older record must not vouch for it either
                raise store_error(cfg, e, "init") from None
        write_record(record, payload)
        return {"record": str(record), "enabled": enabled}
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
    write_record(paths.parent_record(cfg, db, model), payload)
    return {"record": str(paths.parent_record(cfg, db, model)), "n_folds_done": payload["n_folds_done"],
            "n_runs_done": payload["n_runs_done"]}


def _fold_name(db: str, model: str, fold=None, seed=None) -> str:
    """ckplus/fersnet/seed0/fold3 (paths.run_label); a parent run: ckplus/fersnet."""
    if fold is None:
        return paths.run_label(db, model)
    return paths.run_label(db, model, fold, seed) if isinstance(seed, int) else paths.run_label(db, model, fold)


def _logged(cfg: dict, results: list[tuple[str, str, int, int]]) -> set[tuple[str, str, int, int]]:
    """The results whose current files have a fold run in the store (same stamp); an absent
    store holds nothing (and is not created here)."""
    store = local_store(tracking_uri(cfg))
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
            key = (model, str(seed), str(fold), fold_profile(cfg, job_config(folder)), result_stamp(folder))
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
        with patience(SUMMARY_WAIT_S):
            logged = _logged(cfg, results)
    except Exception as e:  # noqa: BLE001 - any store failure: say so, count from the records
        out["logged"], out["error"] = None, one_line(e)
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
        line = f"MLflow: no summary ({one_line(e)}); `{SYNC_COMMAND}` re-logs every result on disk"
    print(line, file=out or sys.stderr, flush=True)
    return line
