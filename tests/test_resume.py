"""Resume that works: a demo whose Snakemake was killed outright resumes without a manual
`--unlock` (fersnet/demo.py), and a lost MLflow init record re-runs no fold
(fersnet/workflow.py). Real Snakemake runs of the test profile in a copy of the project."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_workflow import BIN, make_project, snakemake

TRAIN = "results/ckplus/fersnet/seed0/fold0/metrics.json"


def project_env(proj: Path) -> dict:
    """The copy's own fersnet first (the demo runs Snakemake in the folder its package lies in)."""
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(proj),
                OMP_NUM_THREADS="1")


def wait_for(condition, what: str, proc=None, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_dry_run_flags_are_recognised():
    from fersnet.workflow import dry_run
    for argv in (["snakemake", "-n"], ["snakemake", "all", "-np"], ["snakemake", "--dry-run"], ["x", "-pn", "--cores", "1"]):
        assert dry_run(argv), argv
    for argv in (["snakemake", "--cores", "1", "all"], ["snakemake", "-c1"], ["snakemake", "--config", "n=1"], ["-n"]):
        assert not dry_run(argv), argv


@pytest.mark.slow
def test_the_demo_resumes_after_its_snakemake_is_killed_and_leaves_a_running_ones_lock(tmp_path):
    from fersnet import demo
    proj = make_project(tmp_path, models=["fersnet"], **{"mlflow.enabled": False})
    env = project_env(proj)
    run = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", TRAIN], cwd=proj, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: (proj / "logs/train/ckplus_fersnet_seed0_fold0.log").exists(), "the training job", run)
        locks = demo.held_locks(proj)
        assert locks
        # while Snakemake runs, its lock stays
        assert run.pid in demo.snakemake_processes(proj)
        assert demo.unlock_if_abandoned(proj, [str(BIN / "snakemake"), "--unlock"], env) is None
        assert demo.held_locks(proj) == locks
    finally:
        os.killpg(run.pid, signal.SIGKILL)         # Snakemake and its job, at once
        run.wait(timeout=60)
    assert demo.held_locks(proj) and not (proj / TRAIN).exists()
    stuck = snakemake(proj, "--cores", "1", TRAIN)                    # what a plain rerun meets
    assert stuck.returncode != 0 and "cannot be locked" in stuck.stdout + stuck.stderr
    resumed = subprocess.run([sys.executable, "-m", "fersnet.demo", "--profile", "test", "--cores", "1", TRAIN],
                             cwd=proj, env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert "removed the lock an interrupted Snakemake run left" in resumed.stdout
    assert (proj / TRAIN).is_file() and demo.held_locks(proj) == []


@pytest.mark.slow
def test_a_lost_init_record_is_made_again_and_no_fold_runs_again(tmp_path):
    from fersnet import paths
    proj = make_project(tmp_path, models=["fersnet"], **{"orchestration.folds_per_job": 2})
    first = snakemake(proj, "--cores", "2", "all_folds", timeout=900)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    record = proj / paths.mlflow_init_record({"paths": {"results": "results"}})
    train = proj / TRAIN
    stamp = train.stat().st_mtime_ns
    record.unlink()
    (proj / "results/ckplus/judge/seed0/fold1/metrics.json").unlink()        # one job has to run
    dry = snakemake(proj, "-n", "all_folds")
    assert dry.returncode == 0 and "a real run re-creates it first" in dry.stderr, dry.stderr[-3000:]
    assert not record.exists()                                               # a dry run changes nothing
    again = snakemake(proj, "--cores", "2", "all_folds", timeout=900)
    said = again.stdout + again.stderr
    assert again.returncode == 0, said[-3000:]
    assert "re-created the missing results/_workflow/mlflow_init.json" in said and record.is_file()
    assert "rule train_" not in said and "rule track_init" not in said, said[-3000:]
    assert "rule judge_" in said and train.stat().st_mtime_ns == stamp
