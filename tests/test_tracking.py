"""MLflow mirror: concurrent writers, idempotent --sync, parents, corrupt stores, `fersnet compare`,
locked and unusable stores, and the real jobs that share a store, a judge and the data at once.

Result folders are written here in the contract's format (docs/architecture.md), or by the real
jobs; the MLflow store is real (SQLite under tmp_path), and so is every lock on it.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from argparse import Namespace
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from fersnet import paths

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["anger", "disgust", "fear", "happy", "sadness", "surprise"]


@pytest.fixture
def mlflow_cfg(test_cfg, tmp_path):
    """test_cfg with MLflow on, its store under tmp_path."""
    test_cfg["mlflow"]["enabled"] = True
    test_cfg["mlflow"]["uri"] = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    return test_cfg


def fake_fold(cfg: dict, db: str, model: str, fold: int, accuracy: float, epochs: int = 3,
              scores: dict | None = None, seed: int | None = None) -> Path:
    """A finished fold folder of one seed (default the first of `seeds`) in the contract's format
    (config, history, metrics, scores)."""
    seed = cfg["seed"] if seed is None else seed
    folder = paths.judge_dir(cfg, db, fold, seed) if model == "judge" else paths.run_dir(cfg, db, model, fold, seed)
    folder.mkdir(parents=True, exist_ok=True)
    job = {"db": db, "model": model, "fold": fold, "device": "cpu", "git_commit": "abc123"}
    (folder / paths.CONFIG).write_text(json.dumps(dict(cfg, seed=seed, job=job)))
    lines = ["epoch,G/loss_adv,C/loss_ce,train_acc,test_acc_diagnostic,lr,seconds"]
    lines += [f"{e},{1.0 / e:.4f},{2.0 / e:.4f},{0.2 * e:.3f},{0.1 * e:.3f},0.0001,1.5" for e in range(1, epochs + 1)]
    (folder / paths.HISTORY).write_text("\n".join(lines) + "\n")
    n = len(CLASSES)
    confusion = [[5 if i == j else 1 for j in range(n)] for i in range(n)]
    (folder / paths.METRICS).write_text(json.dumps({
        "db": db, "model": model, "fold": fold, "classes": CLASSES, "accuracy": accuracy,
        "balanced_accuracy": accuracy, "macro_f1": accuracy, "per_class_recall": {c: accuracy for c in CLASSES}, "confusion": confusion, "n_test": 36,
        "selected_epoch": epochs, "selection": "last", "epochs": epochs, "seconds": 4.0, "device": "cpu"}))
    if scores is not None:
        syn = folder / "synthesis"
        syn.mkdir(exist_ok=True)
        (syn / paths.SCORES).write_text(json.dumps(scores))
        (syn / paths.SYNTH_GRID).write_bytes(b"\x89PNG\r\n\x1a\n")
    return folder


def store_runs(cfg: dict, db: str, kind: str = "fold") -> list:
    from fersnet.tracking.store import client_for, experiment_name, search_all
    client = client_for(cfg)
    exp = client.get_experiment_by_name(experiment_name(cfg, db))
    return [] if exp is None else search_all(client, [exp.experiment_id], f"tags.kind = '{kind}'")


def forget_open_stores():
    """Drop MLflow's in-process store and engine caches, as a new process would start.

    The CLI runs each command in a fresh process; a test that removes mlflow.db and syncs again
    in the same process must not reuse SQLite connections to the removed file.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service import utils
    for engine in list(SqlAlchemyStore._engine_map.values()):
        engine.dispose()
    SqlAlchemyStore._engine_map.clear()
    utils._tracking_store_registry._get_store_with_resolved_uri.cache_clear()


WRITER = """
import json, sys
from argparse import Namespace
from fersnet.tracking.folds import log_job
cfg = json.load(open(sys.argv[1]))
print(log_job(cfg, "train", Namespace(db="ckplus", model="fersnet", fold=int(sys.argv[2]))))
"""


@pytest.mark.slow
def test_eight_concurrent_jobs_lose_no_run_and_no_metric(mlflow_cfg, tmp_path):
    from fersnet.tracking.mlflow_log import init_store
    init_store(mlflow_cfg)        # the serial rule before the fan-out
    for k in range(8):
        fake_fold(mlflow_cfg, "ckplus", "fersnet", k, accuracy=0.5 + 0.01 * k)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(mlflow_cfg))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(cfg_file), str(k)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(8)]
    results = [p.communicate(timeout=240) + (p.returncode,) for p in procs]
    for out, err, rc in results:
        assert rc == 0, err[-2000:]
        assert out.strip().splitlines()[-1] == "created"
        assert "locked" not in err
    runs = store_runs(mlflow_cfg, "ckplus")
    assert sorted(int(r.data.tags["fold"]) for r in runs) == list(range(8))
    for run in runs:
        k = int(run.data.tags["fold"])
        assert run.data.metrics["accuracy"] == pytest.approx(0.5 + 0.01 * k)
        assert run.data.metrics["recall/fear"] == pytest.approx(0.5 + 0.01 * k)
        assert run.data.tags["mlflow.parentRunId"]
        assert run.data.tags["git_commit"] == "abc123"
    from fersnet.tracking.store import client_for
    history = client_for(mlflow_cfg).get_metric_history(runs[0].info.run_id, "curve/G/loss_adv")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1


def test_sync_is_idempotent_and_rebuilds_a_removed_store(mlflow_cfg, tmp_path):
    from fersnet.tracking.mlflow_log import sync_all
    for k in range(2):
        fake_fold(mlflow_cfg, "ckplus", "stargan", k, accuracy=0.4,
                  scores={"judge_accuracy": 0.3, "fid_n36": 120.5, "fid": 120.5, "n_synthetic": 36, "ssim": 0.6})
        fake_fold(mlflow_cfg, "ckplus", "judge", k, accuracy=0.9)
    assert sync_all(mlflow_cfg) == {"created": 4, "replaced": 0, "unchanged": 0}
    assert sync_all(mlflow_cfg) == {"created": 0, "replaced": 0, "unchanged": 4}
    assert len(store_runs(mlflow_cfg, "ckplus")) == 4
    # a changed result replaces its run instead of adding a second one
    fake_fold(mlflow_cfg, "ckplus", "judge", 1, accuracy=0.7)
    assert sync_all(mlflow_cfg) == {"created": 0, "replaced": 1, "unchanged": 3}
    assert len(store_runs(mlflow_cfg, "ckplus")) == 4
    store = Path(mlflow_cfg["mlflow"]["uri"][len("sqlite:///"):])
    store.unlink()
    forget_open_stores()
    assert sync_all(mlflow_cfg)["created"] == 4
    runs = store_runs(mlflow_cfg, "ckplus")
    synth = [r for r in runs if r.data.tags["model"] == "stargan"]
    assert all(r.data.metrics["synth/fid"] == pytest.approx(120.5) for r in synth)


def test_parent_run_gets_mean_and_std_over_folds(mlflow_cfg):
    from fersnet.tracking.mlflow_log import main
    for k, acc in enumerate([0.5, 0.7, 0.9]):
        fake_fold(mlflow_cfg, "oulu", "no_mtl", k, accuracy=acc)
    main(mlflow_cfg, Namespace(init=False, sync=False, parent=["oulu", "no_mtl"]))
    (parent,) = store_runs(mlflow_cfg, "oulu", kind="parent")
    assert parent.data.metrics["accuracy_mean"] == pytest.approx(0.7)
    assert parent.data.metrics["accuracy_std"] == pytest.approx(0.2)        # ddof=1
    assert parent.data.metrics["n_folds_done"] == 3
    assert "accuracy_seed_std" not in parent.data.metrics                    # one seed: no spread over seeds
    assert parent.data.tags["seeds"] == "0"
    children = store_runs(mlflow_cfg, "oulu")
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    record = json.loads(paths.parent_record(mlflow_cfg, "oulu", "no_mtl").read_text())
    assert record["n_folds_done"] == 3


def test_experiments_open_as_classic_ml_experiments_and_parents_carry_params_and_headline_metrics(mlflow_cfg):
    """What MLflow's UI shows: the experiment `fersnet/<db>` with the classic-ML kind tag (MLflow 3 otherwise
    opens its GenAI view), parent runs with the model's settings as params and only the headline
    metrics' means, fold runs that last as long as their jobs, with `accuracy` listed before the
    per-epoch curves."""
    from fersnet.tracking.mlflow_log import main
    from fersnet.tracking.store import VIEW_KEY, VIEW_TAG, client_for, ui_url
    for k, acc in enumerate([0.5, 0.7]):
        folder = fake_fold(mlflow_cfg, "oulu", "fersnet", k, accuracy=acc, scores=fold_scores(36, 3.0))
        config = json.loads((folder / paths.CONFIG).read_text())
        config["job"]["started"] = "2026-12-01T10:00:00+00:00"
        (folder / paths.CONFIG).write_text(json.dumps(config))
    main(mlflow_cfg, Namespace(init=False, sync=False, parent=["oulu", "fersnet"]))
    client = client_for(mlflow_cfg)
    exp = client.get_experiment_by_name("fersnet/oulu")
    assert mlflow_cfg["mlflow"]["experiment_prefix"] == "fersnet/" and client.get_experiment_by_name("oulu") is None
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (parent,) = store_runs(mlflow_cfg, "oulu", kind="parent")
    # the saved view the UI opens from `?viewStateShareKey=` (store.ui_url): headline columns that the
    # runs really carry, accuracy first
    view = json.loads(exp.tags[VIEW_TAG])
    shown = [c.split("`")[1] for c in view["selectedColumns"] if c.startswith("metrics.")]
    assert shown[:3] == ["accuracy_mean", "accuracy_std", "accuracy"]
    assert {"accuracy_mean", "accuracy_std", "synth/judge_accuracy_mean", "synth/judge_fid_mean"} <= set(parent.data.metrics) & set(shown)
    assert {"accuracy", "synth/judge_accuracy", "synth/judge_fid"} <= set(store_runs(mlflow_cfg, "oulu")[0].data.metrics) & set(shown)
    assert ui_url("http://127.0.0.1:5000", exp.experiment_id) == (
        f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs?viewStateShareKey={VIEW_KEY}")
    assert parent.data.params["train.lr"] == str(mlflow_cfg["train"]["lr"])
    assert parent.data.params["profile"] == mlflow_cfg["profile"]
    assert parent.data.metrics["accuracy_mean"] == pytest.approx(0.6)
    assert "synth/judge_fid_mean" in parent.data.metrics and "synth/judge_accuracy_mean" in parent.data.metrics
    assert not any(name.startswith(("synth/fid_dims", "epochs", "selected_epoch", "curve/"))
                   for name in parent.data.metrics)
    for run in store_runs(mlflow_cfg, "oulu"):
        assert run.info.end_time - run.info.start_time == 4000            # metrics.json's 4.0 s
        assert sorted(run.data.metrics)[0] == "accuracy"
        assert "curve/train_acc" in run.data.metrics
    # other settings: MLflow params cannot change, so the parent is replaced and its folds follow it
    mlflow_cfg["train"]["lr"] = 0.5
    main(mlflow_cfg, Namespace(init=False, sync=False, parent=["oulu", "fersnet"]))
    (new,) = store_runs(mlflow_cfg, "oulu", kind="parent")
    assert new.info.run_id != parent.info.run_id and new.data.params["train.lr"] == "0.5"
    assert {r.data.tags["mlflow.parentRunId"] for r in store_runs(mlflow_cfg, "oulu")} == {new.info.run_id}


def test_track_records_are_written_when_mlflow_is_disabled(test_cfg):
    from fersnet.tracking.mlflow_log import main
    fake_fold(test_cfg, "mmi", "fersnet", 0, accuracy=0.6)
    main(test_cfg, Namespace(init=True, sync=False, parent=None))
    main(test_cfg, Namespace(init=False, sync=False, parent=["mmi", "fersnet"]))
    assert json.loads(paths.mlflow_init_record(test_cfg).read_text())["enabled"] is False
    record = json.loads(paths.parent_record(test_cfg, "mmi", "fersnet").read_text())
    assert record["metrics"]["accuracy"]["mean"] == pytest.approx(0.6)


def write_params(cfg: dict, path: Path) -> Path:
    """A params.yaml whose test profile writes under tmp_path (CLI jobs read a params file)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["synth"]["out"] = cfg["synth"]["out"]
    raw["preprocess"]["out"] = cfg["preprocess"]["out"]
    raw["paths"] = dict(cfg["paths"])
    for db in ("ckplus", "oulu", "mmi"):
        raw["data"][db]["root"] = cfg["data"][db]["root"]
    raw["mlflow"] = dict(cfg["mlflow"])
    path.write_text(yaml.safe_dump(raw))
    return path


def test_corrupt_store_warns_but_the_job_succeeds_and_sync_recovers(mlflow_cfg, tmp_path, capsys):
    from fersnet.cli import main as cli
    from conftest import write_processed
    write_processed(Path(mlflow_cfg["preprocess"]["out"]) / "ckplus", size=mlflow_cfg["preprocess"]["size"])
    store = Path(mlflow_cfg["mlflow"]["uri"][len("sqlite:///"):])
    store.parent.mkdir(parents=True)
    store.write_bytes(b"this is not an sqlite database" * 100)
    params = write_params(mlflow_cfg, tmp_path / "params.yaml")
    rc = cli(["judge", "--params", str(params), "--profile", "test", "--db", "ckplus", "--fold", "0"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "warning: MLflow logging failed" in err
    assert (paths.judge_dir(mlflow_cfg, "ckplus", 0) / paths.METRICS).is_file()
    assert cli(["track", "--params", str(params), "--profile", "test", "--sync"]) == 2
    assert "is not usable" in capsys.readouterr().err
    store.unlink()
    forget_open_stores()
    assert cli(["track", "--params", str(params), "--profile", "test", "--sync"]) == 0
    (run,) = store_runs(mlflow_cfg, "ckplus")
    assert run.data.tags["model"] == "judge" and "accuracy" in run.data.metrics


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_compare_on_a_truncated_store_gives_the_one_line_error_of_track(mlflow_cfg, tmp_path, capsys, keep):
    from fersnet.cli import main as cli
    fake_fold(mlflow_cfg, "ckplus", "fersnet", 0, accuracy=0.6)
    params = write_params(mlflow_cfg, tmp_path / "params.yaml")
    assert cli(["track", "--params", str(params), "--profile", "test", "--sync"]) == 0
    store = Path(mlflow_cfg["mlflow"]["uri"][len("sqlite:///"):])
    store.write_bytes(store.read_bytes()[: int(store.stat().st_size * keep)])     # cut short
    forget_open_stores()
    capsys.readouterr()
    errors = {}
    for verb in ("compare", "track"):
        argv = [verb, "--params", str(params), "--profile", "test"] + (["--sync"] if verb == "track" else [])
        assert cli(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "[SQL:" not in err, err
        (line,) = err.strip().splitlines()
        errors[verb] = line.removeprefix(f"fersnet {verb}: error: ")
    assert errors["compare"] == errors["track"]
    assert errors["compare"].startswith(f"MLflow store {mlflow_cfg['mlflow']['uri']} is not usable (")
    assert "move mlflow.db aside and run `fersnet track --sync`" in errors["compare"]


def fold_scores(n: int, judge_fid: float) -> dict:
    """scores.json of a fold with n synthesized faces, as score.py writes it (sized and plain keys)."""
    return {"judge_accuracy": 0.5, "n_synthetic": n, f"judge_fid_n{n}": judge_fid, "judge_fid": judge_fid,
            f"fid_n{n}": None, f"kid_n{n}": None, "fid": None, "kid": None, "ssim": 0.6}


def test_a_fold_logs_its_frechet_distance_unsized_beside_its_sample_size(mlflow_cfg):
    from fersnet.tracking.mlflow_log import sync_all
    fake_fold(mlflow_cfg, "ckplus", "fersnet", 0, accuracy=0.6, scores=fold_scores(144, 2.0))
    fake_fold(mlflow_cfg, "ckplus", "fersnet", 1, accuracy=0.8, scores=fold_scores(162, 4.0))
    sync_all(mlflow_cfg)
    by_fold = {r.data.tags["fold"]: r.data.metrics for r in store_runs(mlflow_cfg, "ckplus")}
    assert by_fold["0"]["synth/judge_fid"] == 2.0 and by_fold["0"]["synth/n_synthetic"] == 144
    assert by_fold["1"]["synth/judge_fid"] == 4.0 and by_fold["1"]["synth/n_synthetic"] == 162
    assert not [m for metrics in by_fold.values() for m in metrics if "_n1" in m]


def test_compare_puts_two_models_of_a_real_store_in_one_row_each_and_filters_by_tag(mlflow_cfg, capsys):
    from fersnet.tracking import compare
    from fersnet.tracking.mlflow_log import sync_all
    # test folds of different sizes (as on CK+): 144 and 162 synthesized faces
    for k, (acc, n) in enumerate([(0.6, 144), (0.8, 162)]):
        fake_fold(mlflow_cfg, "ckplus", "fersnet", k, accuracy=acc, scores=fold_scores(n, 2.0 + 2 * k))
        fake_fold(mlflow_cfg, "ckplus", "no_convflu", k, accuracy=0.5)
    sync_all(mlflow_cfg)
    compare.main(mlflow_cfg, Namespace(experiment="ckplus", tags=["profile=test"]))
    out = capsys.readouterr().out
    lines = out.splitlines()
    tables = [line for line in lines if not line.startswith("MLflow:")]     # the store's summary names a path
    assert max(map(len, tables)) < 120                      # no line wraps in a terminal
    assert lines[0].startswith("CK+ (experiment fersnet/ckplus): ")      # the name MLflow shows
    header = lines[1]
    assert header.split()[:4] == ["profile", "seeds", "folds", "runs"]
    assert "accuracy %" in header and "balanced acc. %" in header and "macro F1 %" in header
    fer, synthesis = out.split("\nsynthesis\n")
    assert not any("_n1" in h for h in out.splitlines())    # one column per quantity, not per fold size
    fersnet = next(line for line in fer.splitlines() if line.split("  ")[0] == "FERSNet")
    assert "70.0 ± 14.1" in fersnet                         # accuracy in %, sample std over the 2 folds
    no_convflu = next(line for line in fer.splitlines() if line.startswith("FERSNet w/o ConvFLU"))
    assert no_convflu.count("50.0 ± 0.0") == 3              # accuracy, balanced accuracy, macro F1
    head, *body, link = synthesis.split("\n\n")[0].splitlines()
    assert re.fullmatch(r"  in mlflow ui: http://127\.0\.0\.1:5000/#/experiments/\d+/runs\?viewStateShareKey=fersnet-headline",
                        link), link                          # the runs table with the headline columns
    assert "judge FD" in head and head.split()[-1] == "N"
    assert [line.split("  ")[0] for line in body] == ["FERSNet"]      # no synthesis logged for the other
    assert "3.00 ± 1.41" in body[0] and "153 ± 13" in body[0]         # judge FD and N, each one column
    compare.main(mlflow_cfg, Namespace(experiment="ckplus", tags=["profile=paper"]))
    assert "no fold runs match" in capsys.readouterr().out
    with pytest.raises(Exception, match="TAG=VALUE"):
        compare.main(mlflow_cfg, Namespace(experiment=None, tags=["profile"]))


def test_deferred_job_logging_leaves_the_folds_to_the_parent_step(mlflow_cfg):
    from fersnet.tracking.folds import log_job
    from fersnet.tracking.parents import log_parent
    mlflow_cfg["mlflow"]["log_jobs"] = False
    fake_fold(mlflow_cfg, "mmi", "stargan", 0, accuracy=0.3)
    assert log_job(mlflow_cfg, "train", Namespace(db="mmi", model="stargan", fold=0)) == "deferred"
    assert not Path(mlflow_cfg["mlflow"]["uri"][len("sqlite:///"):]).exists()
    log_parent(mlflow_cfg, "mmi", "stargan")
    (run,) = store_runs(mlflow_cfg, "mmi")
    assert run.data.metrics["accuracy"] == pytest.approx(0.3)


def test_compare_prints_a_single_value_without_a_spread():
    import pandas as pd
    from fersnet.tracking.compare import format_table
    rows = pd.DataFrame([{"model": "fersnet", "profile": "demo", "seeds": 1, "folds": 3, "runs": 3,
                          "accuracy": {"mean": 50.0, "std": 10.0, "n": 3},
                          "synth/judge_fid": {"mean": 2.5, "std": float("nan"), "n": 1}}])
    text = format_table("ckplus", ["accuracy", "synth/judge_fid"], rows)
    assert "50.0 ± 10.0\n" in text and "2.50 (n=1)" in text and "± 0" not in text


def test_compare_tables_of_every_metric_over_seeds_keep_lines_under_120_characters():
    import pandas as pd
    from fersnet.tracking.compare import COLUMNS, format_table
    cell = {"mean": 123.456, "std": 12.345, "seed_std": 1.234, "n": 20}
    rows = pd.DataFrame([{"model": m, "profile": "paper", "seeds": 2, "folds": 10, "runs": 20,
                          **{c: dict(cell) for c in COLUMNS}} for m in ("fersnet", "no_convflu", "stargan")])
    text = format_table("oulu", list(COLUMNS), rows)
    assert max(len(line) for line in text.splitlines()) < 120, text
    assert "123.5 ± 12.3 [± 1.2]" in text and "123.4560 ± 12.3450 [± 1.2340]" in text    # % and KID


# --- a locked or unusable store; processes sharing it --------------------------------------------
HOLDER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2])) if len(sys.argv) > 2 else sys.stdin.readline()
con.execute("COMMIT")
"""


def store_file(cfg: dict) -> Path:
    return Path(cfg["mlflow"]["uri"][len("sqlite:///"):])


@contextmanager
def exclusive_lock(db_file: Path, seconds: float | None = None):
    """Another process holds SQLite's exclusive lock on `db_file`: for `seconds`, or until the
    block ends."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db_file)] + ([str(seconds)] if seconds else []),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    try:
        yield holder
    finally:
        if seconds is None:
            holder.stdin.write("\n")
            holder.stdin.flush()
        holder.wait(timeout=120)


def track(params: Path, *flags: str) -> int:
    from fersnet.cli import main as cli
    forget_open_stores()                  # each command opens the store as a new process would
    return cli(["track", "--params", str(params), "--profile", "test", *flags])


@pytest.mark.slow
def test_a_store_locked_for_longer_than_sqlites_5s_wait_is_waited_for(mlflow_cfg, tmp_path):
    from fersnet.tracking import folds, mlflow_log
    params = write_params(mlflow_cfg, tmp_path / "params.yaml")
    assert track(params, "--init") == 0
    fake_fold(mlflow_cfg, "ckplus", "fersnet", 0, accuracy=0.6)
    forget_open_stores()
    with exclusive_lock(store_file(mlflow_cfg), seconds=8):
        t0 = time.monotonic()
        assert folds.log_job(mlflow_cfg, "train", Namespace(db="ckplus", model="fersnet", fold=0)) == "created"
        assert time.monotonic() - t0 > 5.0             # it outwaited SQLite's own 5 s
    paths.mlflow_init_record(mlflow_cfg).unlink()
    with exclusive_lock(store_file(mlflow_cfg), seconds=7):
        assert track(params, "--init") == 0
    assert paths.mlflow_init_record(mlflow_cfg).is_file()
    assert folds.recorded_failures(mlflow_cfg) == []
    st = mlflow_log.status(mlflow_cfg)
    assert (st["logged"], st["total"], st["missing"]) == (1, 1, [])
    assert mlflow_log.summary_line(st).startswith("MLflow: 1 of 1 fold runs logged, none failed")


@pytest.mark.slow
def test_a_store_locked_past_the_wait_keeps_the_job_fails_init_loudly_and_sync_recovers(
        mlflow_cfg, tmp_path, capsys, monkeypatch):
    from conftest import write_processed
    from fersnet.cli import main as cli
    from fersnet.tracking import folds, mlflow_log, store as tracking_store
    write_processed(Path(mlflow_cfg["preprocess"]["out"]) / "ckplus", size=mlflow_cfg["preprocess"]["size"])
    params = write_params(mlflow_cfg, tmp_path / "params.yaml")
    assert track(params, "--init") == 0 and paths.mlflow_init_record(mlflow_cfg).is_file()
    monkeypatch.setattr(tracking_store, "LOCK_WAIT_S", 1.0)     # give up after one SQLite wait (5 s)
    capsys.readouterr()
    with exclusive_lock(store_file(mlflow_cfg)):
        forget_open_stores()
        rc = cli(["judge", "--params", str(params), "--profile", "test", "--db", "ckplus", "--fold", "0"])
        assert rc == 0 and "warning: MLflow logging failed" in capsys.readouterr().err
        judge = paths.judge_dir(mlflow_cfg, "ckplus", 0)
        assert all((judge / f).is_file() for f in (paths.METRICS, paths.CHECKPOINT, paths.CONFIG, paths.HISTORY))
        (record,) = folds.recorded_failures(mlflow_cfg)
        assert (record["database"], record["model"], record["seed"], record["fold"]) == ("ckplus", "judge", 0, 0)
        assert Path(record["file"]).name == "ckplus_judge_seed0_fold0.json"
        assert "database is locked" in record["error"] and record["relog"] == "fersnet track --sync"

        assert track(params, "--init") == 2                  # loudly: non-zero, and no record
        assert "is not usable" in capsys.readouterr().err
        assert not paths.mlflow_init_record(mlflow_cfg).exists()

        forget_open_stores()
        line = mlflow_log.summary_line(mlflow_log.status(mlflow_cfg))
        assert "cannot be read" in line and "1 fold results on disk, 1 recorded as not logged" in line
        assert "ckplus/judge/seed0/fold0" in line and "`fersnet track --sync`" in line
    assert track(params, "--sync") == 0
    (run,) = store_runs(mlflow_cfg, "ckplus")
    assert run.data.tags["model"] == "judge" and "accuracy" in run.data.metrics
    assert folds.recorded_failures(mlflow_cfg) == []
    assert mlflow_log.summary_line(mlflow_log.status(mlflow_cfg)).startswith("MLflow: 1 of 1 fold runs logged, none")


def test_an_unwritable_store_keeps_the_job_fails_init_loudly_and_sync_recovers(mlflow_cfg, tmp_path, capsys):
    from conftest import write_processed
    from fersnet.cli import main as cli
    from fersnet.tracking import folds, mlflow_log
    write_processed(Path(mlflow_cfg["preprocess"]["out"]) / "ckplus", size=mlflow_cfg["preprocess"]["size"])
    blocker = tmp_path / "blocked"                       # a file where the store's folder should be
    blocker.write_text("not a folder")
    mlflow_cfg["mlflow"]["uri"] = f"sqlite:///{blocker / 'store' / 'mlflow.db'}"
    params = write_params(mlflow_cfg, tmp_path / "params.yaml")
    forget_open_stores()
    assert cli(["judge", "--params", str(params), "--profile", "test", "--db", "ckplus", "--fold", "0"]) == 0
    assert "warning: MLflow logging failed" in capsys.readouterr().err
    assert (paths.judge_dir(mlflow_cfg, "ckplus", 0) / paths.METRICS).is_file()
    assert track(params, "--init") == 2
    err = capsys.readouterr().err
    assert f"MLflow store {mlflow_cfg['mlflow']['uri']} is not usable" in err and "mlflow.enabled: false" in err
    assert not paths.mlflow_init_record(mlflow_cfg).exists()
    st = mlflow_log.status(mlflow_cfg)
    assert (st["logged"], st["total"], st["missing"]) == (0, 1, ["ckplus/judge/seed0/fold0"])
    line = mlflow_log.summary_line(st)
    assert "0 of 1 fold runs logged, 1 not logged (ckplus/judge/seed0/fold0" in line and "fersnet track --sync" in line
    assert track(params, "--sync") == 2                  # still unusable: --sync says so
    blocker.unlink()                                     # the researcher makes the store usable
    assert track(params, "--sync") == 0
    assert [r.data.tags["model"] for r in store_runs(mlflow_cfg, "ckplus")] == ["judge"]
    assert folds.recorded_failures(mlflow_cfg) == []
    assert mlflow_log.status(mlflow_cfg)["logged"] == 1


def test_workflow_summary_prints_one_line_and_never_raises(test_cfg):
    import io
    from fersnet.tracking import mlflow_log
    out = io.StringIO()
    assert mlflow_log.workflow_summary(test_cfg, out) == "MLflow: tracking is off (`mlflow.enabled: false`); no runs logged"
    broken = dict(test_cfg, mlflow=None)                 # whatever goes wrong, the run's end is not hurt
    assert mlflow_log.workflow_summary(broken, out).startswith("MLflow: no summary (TypeError")
    assert out.getvalue().count("\n") == 2


SAME_FOLD = """
import json, sys, time
from pathlib import Path
import mlflow  # noqa: F401  imported before the barrier, so that the processes log at the same moment
from fersnet.tracking.folds import log_fold
cfg = json.load(open(sys.argv[1]))
barrier, n, deadline = Path(sys.argv[2]), int(sys.argv[3]), time.time() + 120
(barrier / sys.argv[4]).touch()
while len(list(barrier.iterdir())) < n and time.time() < deadline:
    time.sleep(0.001)
print(log_fold(cfg, "ckplus", "fersnet", 0, "sync"))
"""


@pytest.mark.slow
def test_processes_logging_the_same_fold_at_once_all_succeed_and_leave_one_run(mlflow_cfg, tmp_path):
    """A job and `track --sync` (or two syncs) logging one fold at the same moment: each used to
    delete the run the other was writing ("must be in the 'active' state"), or both created one."""
    from fersnet.tracking.mlflow_log import init_store
    init_store(mlflow_cfg)
    fake_fold(mlflow_cfg, "ckplus", "fersnet", 0, accuracy=0.5)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(mlflow_cfg))
    barrier = tmp_path / "ready"                           # each process checks in once MLflow is imported
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", SAME_FOLD, str(cfg_file), str(barrier), "4", str(k)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(4)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert [rc for _, _, rc in results] == [0] * 4, [err[-1500:] for _, err, _ in results]
    assert sorted(out.split()[-1] for out, _, _ in results) == ["created", "unchanged", "unchanged", "unchanged"]
    assert len(store_runs(mlflow_cfg, "ckplus")) == 1


@pytest.mark.slow
def test_jobs_sharing_a_judge_the_data_and_the_store_run_at_once_and_all_are_logged(mlflow_cfg, tmp_path):
    """The jobs of a workflow that share files, as real processes at the same moment: two scoring
    jobs of one fold (same judge, same data, same store), the judge of the next fold (beside that
    judge), `track --sync` re-logging the same folds, and another program locking the store for
    longer than SQLite's 5 s wait just as a scoring job starts to log."""
    from conftest import write_processed
    from fersnet.metrics.judge import train_judge
    from fersnet.tracking import folds, mlflow_log
    from fersnet.training.train import train_job
    cfg = mlflow_cfg
    write_processed(Path(cfg["preprocess"]["out"]) / "ckplus", classes=["happy", "sadness", "surprise"],
                    n_subjects=10, size=cfg["preprocess"]["size"])
    quiet = {"log": lambda msg: None}
    train_judge(cfg, "ckplus", 0, **quiet)
    for model in ("fersnet", "no_convflu"):
        train_job(cfg, "ckplus", model, 0)
    params = write_params(cfg, tmp_path / "params.yaml")
    assert track(params, "--init") == 0
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "torch"), OMP_NUM_THREADS="1")   # no Inception: FID skipped
    common = ["--params", str(params), "--profile", "test", "--db", "ckplus"]
    commands = {"score fersnet": ["score", *common, "--model", "fersnet", "--fold", "0"],
                "score no_convflu": ["score", *common, "--model", "no_convflu", "--fold", "0"],
                "judge fold 1": ["judge", *common, "--fold", "1"],
                "track --sync": ["track", "--params", str(params), "--profile", "test", "--sync"]}
    procs = {name: subprocess.Popen([sys.executable, "-m", "fersnet", *argv], cwd=ROOT, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, argv in commands.items()}
    # the moment the first scores are on disk its job opens the store: another program locks it now
    first = paths.synthesis_dir(cfg, "ckplus", "fersnet", 0) / paths.SCORES
    while not first.is_file() and procs["score fersnet"].poll() is None:
        time.sleep(0.05)
    with exclusive_lock(store_file(cfg), seconds=7):
        pass
    results = {name: p.communicate(timeout=900) + (p.returncode,) for name, p in procs.items()}
    for name, (_, err, rc) in results.items():
        assert rc == 0, f"{name}: {err[-2000:]}"
        assert "MLflow logging failed" not in err and "track: warning" not in err, f"{name}: {err[-2000:]}"
    for model in ("fersnet", "no_convflu"):
        assert json.loads((paths.synthesis_dir(cfg, "ckplus", model, 0) / paths.SCORES).read_text())["n_synthetic"] > 0
    assert (paths.judge_dir(cfg, "ckplus", 1) / paths.METRICS).is_file()
    assert folds.recorded_failures(cfg) == []
    st = mlflow_log.status(cfg)
    assert (st["logged"], st["total"], st["missing"]) == (4, 4, [])   # judges 0, 1 and both generators
    runs = store_runs(cfg, "ckplus")
    assert sorted((r.data.tags["model"], r.data.tags["fold"]) for r in runs) == [
        ("fersnet", "0"), ("judge", "0"), ("judge", "1"), ("no_convflu", "0")]



# --- checkpoints and per-job time and memory ------------------------------------------------------
def artifacts(cfg: dict, run_id: str, path: str = "") -> set[str]:
    from fersnet.tracking.store import client_for
    return {a.path for a in client_for(cfg).list_artifacts(run_id, path)}


def test_a_fold_run_stores_its_checkpoint_only_when_asked_and_an_earlier_run_gets_it_later(mlflow_cfg, tmp_path):
    from fersnet.tracking.folds import log_fold
    from fersnet.tracking.mlflow_log import main
    from fersnet.tracking.store import client_for
    folder = fake_fold(mlflow_cfg, "ckplus", "fersnet", 0, accuracy=0.8)
    (folder / paths.CHECKPOINT).write_bytes(b"trained networks and optimizer state")
    assert log_fold(mlflow_cfg, "ckplus", "fersnet", 0, "train") == "created"
    (run,) = store_runs(mlflow_cfg, "ckplus")
    assert "checkpoint" not in artifacts(mlflow_cfg, run.info.run_id)          # default: off
    mlflow_cfg["mlflow"]["log_checkpoints"] = True                          # then `fersnet track --sync`
    assert main(mlflow_cfg, Namespace(init=False, sync=True, parent=None))["replaced"] == 1
    (run,) = store_runs(mlflow_cfg, "ckplus")
    assert artifacts(mlflow_cfg, run.info.run_id, "checkpoint") == {"checkpoint/checkpoint.pt"}
    copy = client_for(mlflow_cfg).download_artifacts(run.info.run_id, "checkpoint/checkpoint.pt", str(tmp_path))
    assert Path(copy).read_bytes() == (folder / paths.CHECKPOINT).read_bytes()
    assert run.data.tags["checkpoint"] == "logged"
    assert log_fold(mlflow_cfg, "ckplus", "fersnet", 0, "sync") == "unchanged"


def test_the_checkpoint_key_is_outside_every_fingerprint(mlflow_cfg):
    from fersnet import provenance
    on = json.loads(json.dumps(mlflow_cfg))
    on["mlflow"]["log_checkpoints"] = True
    for verb, model in (("train", "fersnet"), ("judge", None), ("score", None), ("report", None)):
        assert provenance.job_params(on, verb, model) == provenance.job_params(mlflow_cfg, verb, model)


BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(step: str, db: str, model: str | None, group: str, seconds: float, rss: float,
                    cpu: float, age_s: float = 0.0, seed: int = 0) -> Path:
    """A benchmark file in Snakemake's format (benchmark: directive), `age_s` older than now."""
    path = paths.benchmark_file(step, db, model, group, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BENCH_HEADER + f"{seconds}\t0:00:{int(seconds):02d}\t{rss}\t4733.86\t401.18\t494.03\t0.00\t0.05\t"
                    f"12.20\t{cpu}\n")
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def parent_run(cfg: dict, db: str, model: str):
    from fersnet.tracking.store import client_for
    (parent,) = [r for r in store_runs(cfg, db, kind="parent") if r.data.tags["model"] == model]

    def history(name: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client_for(cfg).get_metric_history(parent.info.run_id, name))
    return parent, history


def test_the_parent_run_holds_each_jobs_time_and_peak_memory_from_the_benchmarks(mlflow_cfg, tmp_path, monkeypatch):
    from fersnet.tracking.mlflow_log import main
    monkeypatch.chdir(tmp_path)                    # benchmarks/ lies in the folder the workflow runs in
    mlflow_cfg["n_folds"], mlflow_cfg["orchestration"]["folds_per_job"] = 2, 1      # one job per fold
    for k in (0, 1):
        fake_fold(mlflow_cfg, "ckplus", "fersnet", k, accuracy=0.8, scores=fold_scores(36, 3.0))
        write_benchmark("train", "ckplus", "fersnet", f"fold{k}", seconds=40.0 + k, rss=900.0 + 100 * k, cpu=30.0)
    # a score benchmark older than the scores it stands for is from an earlier run: left out
    write_benchmark("score", "ckplus", "fersnet", "fold0", seconds=9.0, rss=500.0, cpu=8.0, age_s=3600)
    main(mlflow_cfg, Namespace(init=False, sync=False, parent=["ckplus", "fersnet"]))
    parent, history = parent_run(mlflow_cfg, "ckplus", "fersnet")
    assert history("job/train/seconds") == [(0, 40.0), (1, 41.0)]            # one point per job, step = its fold
    assert history("job/train/max_rss_mb") == [(0, 900.0), (1, 1000.0)]
    metrics = parent.data.metrics
    assert metrics["job/train/seconds_total"] == pytest.approx(81.0)
    assert metrics["job/train/cpu_seconds_total"] == pytest.approx(60.0)
    assert metrics["job/train/max_rss_mb_peak"] == 1000.0 and metrics["job/train/n_jobs"] == 2
    assert not any(name.startswith("job/score/") for name in metrics)


def test_a_job_of_several_folds_is_one_point_on_the_parent_and_the_judges_have_theirs(mlflow_cfg, tmp_path, monkeypatch):
    from fersnet.tracking.mlflow_log import main
    monkeypatch.chdir(tmp_path)
    mlflow_cfg["n_folds"], mlflow_cfg["orchestration"]["folds_per_job"] = 2, 2     # folds 0-1 in one job
    for k in (0, 1):
        fake_fold(mlflow_cfg, "oulu", "judge", k, accuracy=0.9)
    write_benchmark("judge", "oulu", None, "folds0_1", seconds=12.5, rss=700.0, cpu=20.0)
    main(mlflow_cfg, Namespace(init=False, sync=False, parent=["oulu", "judge"]))
    parent, history = parent_run(mlflow_cfg, "oulu", "judge")
    assert history("job/judge/seconds") == [(0, 12.5)]
    assert parent.data.metrics["job/judge/n_jobs"] == 1 and parent.data.metrics["job/judge/max_rss_mb_peak"] == 700.0


def test_a_benchmark_without_measurements_adds_nothing(tmp_path):
    from fersnet.tracking import benchmarks
    bench = tmp_path / "b.tsv"
    bench.write_text(BENCH_HEADER + "NA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n")
    assert benchmarks.read_benchmark(bench) == {}
    assert benchmarks.parent_metrics([], 10) == []


# --- several training seeds -----------------------------------------------------------------------
def test_two_seeds_are_two_runs_per_fold_and_the_parent_has_both_spreads(mlflow_cfg, tmp_path, monkeypatch, capsys):
    """2 seeds x 2 folds: a run per (seed, fold) with its seed tag, the parent's mean, std over
    folds and std over seeds equal to the definitions computed by hand, the jobs of both seeds on
    their own MLflow steps, re-logging idempotent, and `fersnet compare` with both spreads."""
    from statistics import mean, stdev
    from fersnet import config
    from fersnet.tracking import compare
    from fersnet.tracking.folds import log_job
    from fersnet.tracking.mlflow_log import main, status, sync_all
    from fersnet.tracking.store import client_for
    monkeypatch.chdir(tmp_path)
    cfg = mlflow_cfg
    cfg["run_seeds"], cfg["n_folds"], cfg["orchestration"]["folds_per_job"] = [0, 1], 2, 1
    acc = {(0, 0): 0.50, (0, 1): 0.70, (1, 0): 0.60, (1, 1): 0.90}        # (seed, fold) -> accuracy
    for (seed, fold), a in acc.items():
        fake_fold(cfg, "ckplus", "fersnet", fold, accuracy=a, seed=seed)
        write_benchmark("train", "ckplus", "fersnet", f"fold{fold}", seconds=10.0 * (seed + 1) + fold,
                        rss=500.0, cpu=5.0, seed=seed)
    # a run of fold 1 from before runs had a seed (results/<db>/<model>/fold1): the first seed's
    # run of fold 1 to be logged replaces it
    client = client_for(cfg)
    from fersnet.tracking.store import ensure_experiment
    exp_id = ensure_experiment(client, cfg, "ckplus")
    old = client.create_run(exp_id, run_name="fersnet/fold1", tags={
        "kind": "fold", "database": "ckplus", "model": "fersnet", "fold": "1", "profile": "test"}).info.run_id

    # the job of seed 1, fold 0 logs its own run (cfg["seed"] is the job's --seed)
    assert log_job(config.with_seed(cfg, 1), "train", Namespace(db="ckplus", model="fersnet", fold=0)) == "created"
    main(cfg, Namespace(init=False, sync=False, parent=["ckplus", "fersnet"]))
    runs = store_runs(cfg, "ckplus")
    assert sorted((r.data.tags["seed"], r.data.tags["fold"]) for r in runs) == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    assert old not in {r.info.run_id for r in runs}
    for r in runs:
        s, k = int(r.data.tags["seed"]), int(r.data.tags["fold"])
        assert r.data.metrics["accuracy"] == pytest.approx(acc[(s, k)])
        assert r.data.tags["mlflow.runName"] == f"fersnet/seed{s}/fold{k}"
    parent, history = parent_run(cfg, "ckplus", "fersnet")
    m = parent.data.metrics
    fold_means = [mean(acc[(s, k)] for s in (0, 1)) for k in (0, 1)]       # 0.55, 0.80
    seed_means = [mean(acc[(s, k)] for k in (0, 1)) for s in (0, 1)]       # 0.60, 0.75
    assert m["accuracy_mean"] == pytest.approx(mean(acc.values()))         # 0.675, over the 4 runs
    assert m["accuracy_std"] == pytest.approx(stdev(fold_means))           # 0.177, ddof=1
    assert m["accuracy_seed_std"] == pytest.approx(stdev(seed_means))      # 0.106
    assert (m["n_folds_done"], m["n_seeds_done"], m["n_runs_done"]) == (2, 2, 4)
    assert parent.data.tags["seeds"] == "0,1" and parent.data.tags["folds"] == "0,1"
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    # one point per job, each seed's jobs on their own steps: seed * n_folds + fold
    assert history("job/train/seconds") == [(0, 10.0), (1, 11.0), (2, 20.0), (3, 21.0)]
    assert m["job/train/n_jobs"] == 4 and m["job/train/seconds_total"] == pytest.approx(62.0)
    record = json.loads(paths.parent_record(cfg, "ckplus", "fersnet").read_text())
    assert record["seeds"] == [0, 1] and record["n_runs_done"] == 4
    assert record["metrics"]["accuracy"]["seed_std"] == pytest.approx(stdev(seed_means))

    # re-logging changes nothing: same runs, same parent
    assert sync_all(cfg) == {"created": 0, "replaced": 0, "unchanged": 4}
    main(cfg, Namespace(init=False, sync=False, parent=["ckplus", "fersnet"]))
    assert sorted(r.info.run_id for r in store_runs(cfg, "ckplus")) == sorted(r.info.run_id for r in runs)
    assert len(store_runs(cfg, "ckplus", kind="parent")) == 1
    # a changed result of one seed replaces that seed's run only
    fake_fold(cfg, "ckplus", "fersnet", 1, accuracy=0.95, seed=1)
    assert sync_all(cfg) == {"created": 0, "replaced": 1, "unchanged": 3}
    assert len(store_runs(cfg, "ckplus")) == 4
    st = status(cfg)
    assert (st["logged"], st["total"], st["missing"]) == (4, 4, [])

    capsys.readouterr()
    compare.main(cfg, Namespace(experiment="ckplus", tags=[]))
    lines = capsys.readouterr().out.splitlines()
    assert "[± std over seeds]" in lines[0]
    row = next(line for line in lines if line.split("  ")[0] == "FERSNet").split()
    acc[(1, 1)] = 0.95
    fold_means = [mean(acc[(s, k)] for s in (0, 1)) for k in (0, 1)]
    seed_means = [mean(acc[(s, k)] for k in (0, 1)) for s in (0, 1)]
    assert row[1:5] == ["test", "2", "2", "4"]                              # profile, seeds, folds, runs
    assert " ".join(row[5:10]) == (f"{100 * mean(acc.values()):.1f} ± {100 * stdev(fold_means):.1f} "
                                   f"[± {100 * stdev(seed_means):.1f}]")      # accuracy in %, as everywhere


# --- the fold runs' params and which folds count ------------------------------------------------
def test_fold_params_are_provenances_flattening_without_empty_sections():
    from fersnet import provenance
    from fersnet.tracking.folds import flat_params
    tree = {"train": {"lr": 0.1, "milestones": [0.3, 0.8], "plugins": {}}, "seed": 0, "a": {"b": {"c": "x"}}}
    assert flat_params(tree) == {"train.lr": 0.1, "train.milestones": [0.3, 0.8], "seed": 0, "a.b.c": "x"}
    assert provenance.flatten(tree)["train.plugins"] == {}          # fingerprints keep an empty section
    assert provenance.flatten({"fid": {"real": 1.5, "n": 3}, "kid": 2}, sep="/") == {"fid/real": 1.5, "fid/n": 3, "kid": 2}


def test_finished_folds_are_the_configured_folds_of_the_configured_seeds(mlflow_cfg):
    from fersnet.tracking.folds import finished_folds
    mlflow_cfg["run_seeds"], mlflow_cfg["n_folds"] = [0, 2], 3
    for seed, fold in [(0, 0), (0, 2), (2, 1), (0, 3), (1, 0)]:      # fold 3 and seed 1: not configured
        fake_fold(mlflow_cfg, "ckplus", "fersnet", fold, accuracy=0.5, seed=seed)
    unfinished = fake_fold(mlflow_cfg, "ckplus", "fersnet", 1, accuracy=0.5, seed=0)
    (unfinished / paths.METRICS).unlink()
    assert finished_folds(mlflow_cfg, "ckplus", "fersnet") == [(0, 0), (0, 2), (2, 1)]
