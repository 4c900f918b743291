"""MLflow mirror: concurrent writers, idempotent --sync, parents, corrupt stores, `fersnet compare`.

Result folders are written here in the contract's format (docs/architecture.md); the MLflow store
is real (SQLite under tmp_path).
"""
from __future__ import annotations

import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import yaml

from fersnet import paths
from fersnet.tracking import markers

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["anger", "disgust", "fear", "happy", "sadness", "surprise"]


@pytest.fixture
def mlflow_cfg(test_cfg, tmp_path):
    """test_cfg with MLflow on, its store under tmp_path."""
    test_cfg["mlflow"]["enabled"] = True
    test_cfg["mlflow"]["uri"] = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    return test_cfg


def fake_fold(cfg: dict, db: str, model: str, fold: int, accuracy: float, epochs: int = 3,
              scores: dict | None = None) -> Path:
    """A finished fold folder in the contract's format (config, history, metrics, scores)."""
    folder = paths.judge_dir(cfg, db, fold) if model == "judge" else paths.run_dir(cfg, db, model, fold)
    folder.mkdir(parents=True, exist_ok=True)
    job = {"db": db, "model": model, "fold": fold, "device": "cpu", "git_commit": "abc123"}
    (folder / paths.CONFIG).write_text(json.dumps(dict(cfg, job=job)))
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
    from fersnet.tracking.mlflow_log import client_for, search_all
    client = client_for(cfg)
    exp = client.get_experiment_by_name(db)
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
from fersnet.tracking.mlflow_log import log_job
cfg = json.load(open(sys.argv[1]))
print(log_job(cfg, "train", Namespace(db="ckplus", model="fersnet", fold=int(sys.argv[2]))))
"""


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
    from fersnet.tracking.mlflow_log import client_for
    history = client_for(mlflow_cfg).get_metric_history(runs[0].info.run_id, "G/loss_adv")
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
    children = store_runs(mlflow_cfg, "oulu")
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    marker = json.loads(markers.parent_marker(mlflow_cfg, "oulu", "no_mtl").read_text())
    assert marker["n_folds_done"] == 3


def test_track_markers_are_written_when_mlflow_is_disabled(test_cfg):
    from fersnet.tracking.mlflow_log import main
    fake_fold(test_cfg, "mmi", "fersnet", 0, accuracy=0.6)
    main(test_cfg, Namespace(init=True, sync=False, parent=None))
    main(test_cfg, Namespace(init=False, sync=False, parent=["mmi", "fersnet"]))
    assert json.loads(markers.init_marker(test_cfg).read_text())["enabled"] is False
    marker = json.loads(markers.parent_marker(test_cfg, "mmi", "fersnet").read_text())
    assert marker["metrics"]["accuracy"]["mean"] == pytest.approx(0.6)


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
    header = lines[1].split()
    assert header[:2] == ["profile", "folds"] and "synth/judge_fid" in header and "synth/n_synthetic" in header
    assert not any("_n1" in h for h in header)              # one column per quantity, not per fold size
    fersnet = next(line for line in lines if line.split("  ")[0] == "FERSNet")
    assert "0.7 ± 0.14" in fersnet                          # accuracy, sample std over the 2 folds
    assert "3 ± 1.4" in fersnet and "153 ± 13" in fersnet   # judge FD and N, each one column
    no_convflu = next(line for line in lines if line.startswith("FERSNet w/o ConvFLU"))
    assert no_convflu.split()[-4:] == ["-"] * 4             # no synthesis logged for it
    assert "0.5 ± 0" in no_convflu and "macro_f1" in header and "balanced_accuracy" in header
    compare.main(mlflow_cfg, Namespace(experiment="ckplus", tags=["profile=paper"]))
    assert "no fold runs match" in capsys.readouterr().out
    with pytest.raises(Exception, match="TAG=VALUE"):
        compare.main(mlflow_cfg, Namespace(experiment=None, tags=["profile"]))


def test_deferred_job_logging_leaves_the_folds_to_the_parent_step(mlflow_cfg):
    from fersnet.tracking.mlflow_log import log_job, log_parent
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
    rows = pd.DataFrame([{"model": "fersnet", "profile": "demo", "folds": 3,
                          "accuracy": {"mean": 0.5, "std": 0.1, "n": 3},
                          "synth/judge_fid": {"mean": 2.5, "std": float("nan"), "n": 1}}])
    text = format_table("ckplus", ["accuracy", "synth/judge_fid"], rows)
    assert "0.5 ± 0.1 " in text + " " and "2.5 (n=1)" in text and "± 0 " not in text + " "
