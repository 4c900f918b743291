"""What "current" means: `fersnet status`, the workflow's check before it plans, the report's warning,
one writer per result folder, the raw-file manifest and the job logs' last line.

Real CLI and real Snakemake in a copy of the project (tests/test_workflow.py's make_project: the test
profile, CK+ only, two folds), one model.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fersnet import jobrun, provenance, status
from test_workflow import BIN, _set_params, job_counts, make_project, run, run_cli, snakemake

FOLD = "results/ckplus/fersnet/seed0/fold{}"


def small_project(tmp_path: Path, models=("fersnet",)) -> Path:
    return make_project(tmp_path, models=list(models), **{"mlflow.enabled": False})


def states(proj: Path) -> dict[str, dict]:
    out = run_cli(proj, "status", "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    return {r["result"]: r for r in json.loads(out.stdout)["results"]}


def replace_one_raw_image(proj: Path) -> Path:
    """Overwrite one image of the stand-in with another valid image of it (same database, same layout)."""
    images = sorted((proj / "data/synthetic/ckplus").rglob("*.png"))
    target, other = images[-1], images[-2]
    time.sleep(0.01)
    target.write_bytes(other.read_bytes())
    return target


# --- the manifest and the job wrapper: plain functions --------------------------------------------
def test_raw_manifest_changes_with_any_file_under_the_root_and_not_otherwise(tmp_path):
    root = tmp_path / "root"
    (root / "S1" / "001").mkdir(parents=True)
    a = root / "S1" / "001" / "a.png"
    a.write_bytes(b"one")
    first = provenance.raw_manifest(root)
    assert provenance.raw_manifest(root) == first and first.startswith("1:")
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 1000))     # same bytes, touched
    touched = provenance.raw_manifest(root)
    assert touched != first
    (root / "S1" / "001" / "b.png").write_bytes(b"two")                       # a file added
    added = provenance.raw_manifest(root)
    assert added not in (first, touched) and added.startswith("2:")
    (root / "S1" / "loop").symlink_to(root)                                  # a link loop: each folder once
    assert provenance.raw_manifest(root).startswith("2:")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "c.png").write_bytes(b"three")
    (root / "S2").symlink_to(tmp_path / "elsewhere")                         # a linked folder: followed
    assert provenance.raw_manifest(root).startswith("3:")


@pytest.mark.parametrize("code, last", [
    ("import sys; print('hello'); sys.exit(3)", "fersnet job: exit code 3"),
    ("import os; os.kill(os.getpid(), 9)", "fersnet job: ended by signal SIGKILL (9)"),
    ("pass", "fersnet job: exit code 0"),
])
def test_every_job_log_ends_with_how_the_job_ended(tmp_path, code, last):
    log = tmp_path / "logs" / "job.log"
    out = subprocess.run([sys.executable, "-m", "fersnet.jobrun", str(log), "--", sys.executable, "-c", code],
                         capture_output=True, text=True)
    lines = log.read_text().splitlines()
    assert lines[-1].startswith(last + " after "), lines
    assert out.returncode == (137 if "SIGKILL" in last else int(last.rsplit(" ", 1)[1]))
    if "hello" in code:
        assert "hello" in lines


def test_a_job_that_crashes_in_native_code_leaves_its_python_stack_in_the_log(tmp_path):
    """A segmentation fault prints nothing by itself; under jobrun the log holds where it happened."""
    log = tmp_path / "job.log"
    code = "import ctypes\ndef crash():\n    ctypes.string_at(0)\ncrash()\n"
    out = subprocess.run([sys.executable, "-m", "fersnet.jobrun", str(log), "--", sys.executable, "-c", code],
                         capture_output=True, text=True)
    text = log.read_text()
    assert out.returncode == 128 + 11 and "ended by signal SIGSEGV (11)" in text.splitlines()[-1]
    assert "Fatal Python error: Segmentation fault" in text and "in crash" in text, text


def test_jobrun_without_a_command_prints_its_usage_and_fails(capsys):
    assert jobrun.main(["log.txt"]) == 2
    assert "usage" in capsys.readouterr().err


def test_which_stale_results_a_workflow_target_reaches():
    cfg = {"databases": ["ckplus", "mmi"], "run_seeds": [0], "n_folds": 2, "models": ["fersnet", "fes_da"],
           "preprocess": {"out": "data/processed"}, "paths": {"results": "results"}}
    grid = status.expected(cfg)

    def reached(*targets):
        return sorted({r.label for r in grid if status.reached(r, targets, cfg["databases"], grid)})
    every = sorted(r.label for r in grid)
    assert reached() == reached("all") == reached("all_scores") == every
    assert reached("mmi") == sorted(r.label for r in grid if r.db == "mmi")
    assert reached("all_folds") == sorted(r.label for r in grid if r.kind != "score")
    # a result file: itself and what it is made from
    assert reached("results/ckplus/fersnet/seed0/fold1/synthesis/scores.json") == sorted([
        "preprocess ckplus", "train ckplus/fersnet/seed0/fold1", "judge ckplus/judge/seed0/fold1",
        "score ckplus/fersnet/seed0/fold1"])
    assert reached("results/ckplus/fes_da/seed0/fold0/metrics.json") == sorted([
        "preprocess ckplus", "train ckplus/fersnet/seed0/fold0", "train ckplus/fes_da/seed0/fold0"])
    assert reached("data/processed/ckplus/summary.json") == ["preprocess ckplus"]
    files, message = status.workflow_forcerun(cfg, grid[:2], ["mmi"])
    assert files == [] and message is None


def test_the_stale_files_join_forcerun_when_snakemake_assigns_its_settings():
    from dataclasses import dataclass as dc

    from snakemake.settings.types import DAGSettings

    from fersnet.workflow import force_when_planning

    @dc
    class Workflow:                    # as snakemake.workflow.Workflow: a dataclass field, None at parse time
        dag_settings: DAGSettings | None = None

    wf = Workflow()
    seen = []
    force_when_planning(wf, lambda settings: seen.append(set(settings.targets)) or ["results/a/metrics.json"])
    force_when_planning(wf, lambda settings: ["never"])                # installed once
    wf.dag_settings = DAGSettings(targets=frozenset({"ckplus"}), forcerun=frozenset({"preprocess"}))
    assert wf.dag_settings.forcerun == {"preprocess", "results/a/metrics.json"}
    assert seen == [{"ckplus"}] and isinstance(wf, Workflow)


def test_a_second_writer_of_a_result_folder_is_refused_and_the_lock_goes_with_the_first(tmp_path):
    folder = tmp_path / "results" / "ckplus" / "fersnet" / "seed0" / "fold0"
    with status.writer_lock(folder, "fersnet train"):
        assert status.lock_file(folder).is_file()
        with pytest.raises(status.FersnetError, match="fold0 is being written by another fersnet job now"):
            with status.writer_lock(folder, "fersnet train"):
                pass
        other = tmp_path / "results" / "ckplus" / "fersnet" / "seed0" / "fold1"
        with status.writer_lock(other, "fersnet train"):           # another fold: its own lock
            pass
    assert not status.lock_file(folder).exists()
    status.lock_file(folder).write_text("")                         # left by a killed writer: no lock held
    with status.writer_lock(folder, "fersnet train"):
        pass


# --- fersnet status on a real grid ----------------------------------------------------------------
@pytest.mark.slow
def test_status_lists_current_stale_params_stale_data_and_missing_results(tmp_path):
    proj = small_project(tmp_path, ("fersnet", "fes_da"))
    for argv in (["synth", "--db", "ckplus"], ["preprocess", "--db", "ckplus"],
                 ["train", "--db", "ckplus", "--model", "fersnet", "--fold", "0-1"],
                 ["train", "--db", "ckplus", "--model", "fes_da", "--fold", "1"],
                 # fersnet's fold 1 trained again with another learning rate: FES-DA fine-tuned the old one
                 ["train", "--db", "ckplus", "--model", "fersnet", "--fold", "1", "--set", "train.lr=0.5", "--force"]):
        out = run_cli(proj, *argv)
        assert out.returncode == 0, (argv, out.stderr[-3000:])
    got = states(proj)
    assert got["preprocess ckplus"]["state"] == "current"
    assert got["train ckplus/fersnet/seed0/fold0"]["state"] == "current"
    stale_params = got["train ckplus/fersnet/seed0/fold1"]
    assert stale_params["state"] == "stale" and stale_params["reasons"] == ["params"]
    assert "train.lr: 0.5 -> " in stale_params["why"], stale_params
    assert stale_params["command"] == "fersnet train --db ckplus --model fersnet --fold 1 --seed 0 --force"
    stale_data = got["train ckplus/fes_da/seed0/fold1"]
    assert stale_data["state"] == "stale" and stale_data["reasons"] == ["data"], stale_data
    assert "fersnet/seed0/fold1/checkpoint.pt changed" in stale_data["why"], stale_data
    for missing in ("train ckplus/fes_da/seed0/fold0", "judge ckplus/judge/seed0/fold0", "score ckplus/fersnet/seed0/fold1"):
        assert got[missing]["state"] == "missing", missing     # (the forced run replaced fold 1's folder)
    text = run_cli(proj, "status")
    assert text.returncode == 0
    assert text.stdout.strip().splitlines()[-1] == "9 results: 2 current, 2 stale (params 1, data 1), 5 missing"

    # made by another code version (what metrics.json records): stale (code), listed, not re-made
    done = proj / FOLD.format(0) / "metrics.json"
    done.write_text(json.dumps(dict(json.loads(done.read_text()), code_version="0123abc")))
    code = states(proj)["train ckplus/fersnet/seed0/fold0"]
    assert code["state"] == "stale" and code["reasons"] == ["code"] and "made by 0123abc" in code["why"], code
    listed = run_cli(proj, "status", "--stale-only").stdout
    line = next(x for x in listed.splitlines() if "train ckplus/fersnet/seed0/fold0" in x)
    assert line.startswith("stale (code)") and "re-make" not in line, line

    # one raw image replaced: the processed data and everything made from it are stale (data)
    replace_one_raw_image(proj)
    got = states(proj)
    assert got["preprocess ckplus"]["state"] == "stale" and got["preprocess ckplus"]["reasons"] == ["data"]
    assert "changed since it was processed" in got["preprocess ckplus"]["why"]
    assert got["train ckplus/fersnet/seed0/fold0"]["reasons"] == ["data"]
    assert got["train ckplus/fes_da/seed0/fold1"]["reasons"] == ["data"]


# --- the workflow: stale results re-made, the report's warning ------------------------------------
@pytest.mark.slow
def test_the_workflow_remakes_what_the_cli_made_with_other_params_data_or_raw_files(tmp_path):
    proj = small_project(tmp_path)
    # the data prepared by hand: Snakemake has no record of it
    for argv in (["synth", "--db", "ckplus"], ["preprocess", "--db", "ckplus"]):
        assert run_cli(proj, *argv).returncode == 0
    first = snakemake(proj, "--cores", "2", "all", timeout=1500)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    assert "preprocess" not in job_counts(first.stdout + first.stderr)                  # the hand-made data was current
    made = json.loads((proj / FOLD.format(1) / "metrics.json").read_text())["fingerprint"]
    log = (proj / "logs/train/ckplus_fersnet_seed0_fold1.log").read_text().splitlines()
    assert log[-1].startswith("fersnet job: exit code 0 after ")

    # fold 1 re-made by hand with another learning rate: the report flags it, the workflow re-makes it
    forced = run_cli(proj, "train", "--db", "ckplus", "--model", "fersnet", "--fold", "1",
                     "--set", "train.lr=0.5", "--force")
    assert forced.returncode == 0, forced.stderr[-3000:]
    rep = run_cli(proj, "report")
    assert rep.returncode == 0, rep.stderr[-3000:]
    flagged = json.loads((proj / "reports/summary.json").read_text())["provenance"]["not_current"]
    assert [r["result"] for r in flagged] == ["train ckplus/fersnet/seed0/fold1"]
    tex = (proj / "reports/report.tex").read_text()
    assert "Warning: results that are not current" in tex and "train ckplus/fersnet/seed0/fold1" in tex
    plan = snakemake(proj, "-n", "all")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "train ckplus/fersnet/seed0/fold1: train.lr: 0.5 ->" in plan.stderr
    counts = job_counts(plan.stdout + plan.stderr)
    assert counts["train"] == 1 and counts["score"] == 1 and counts["report"] == 1, counts
    again = snakemake(proj, "--cores", "2", "all", timeout=1500)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert json.loads((proj / FOLD.format(1) / "metrics.json").read_text())["fingerprint"] == made
    assert json.loads((proj / "reports/summary.json").read_text())["provenance"]["not_current"] == []
    assert "Nothing to be done" in (lambda o: o.stdout + o.stderr)(snakemake(proj, "-n", "all"))

    # a data setting changed in params.yaml: the hand-made data escapes Snakemake's params check,
    # the fingerprint does not: preprocess and every fold re-run
    frames = yaml.safe_load((proj / "params.yaml").read_text())["data"]["ckplus"]["frames"]
    _set_params(proj, **{"data.ckplus.frames": frames - 1})
    listed = run_cli(proj, "status", "--stale-only")
    assert f"preprocess ckplus: data.ckplus.frames: {frames} -> {frames - 1}" in listed.stdout, listed.stdout
    plan = snakemake(proj, "-n", "all")
    counts = job_counts(plan.stdout + plan.stderr)
    assert plan.returncode == 0 and counts["preprocess"] == 1 and counts["train"] == 2 and counts["judge"] == 2, plan.stdout[-3000:]
    _set_params(proj, **{"data.ckplus.frames": frames})
    assert "Nothing to be done" in (lambda o: o.stdout + o.stderr)(snakemake(proj, "-n", "all"))

    # one raw image replaced: preprocess re-runs, and what follows
    replace_one_raw_image(proj)
    plan = snakemake(proj, "-n", "all")
    counts = job_counts(plan.stdout + plan.stderr)
    assert plan.returncode == 0 and counts["preprocess"] == 1 and counts["train"] == 2, plan.stdout[-3000:]
    rerun = snakemake(proj, "--cores", "2", "data/processed/ckplus/summary.json")
    assert rerun.returncode == 0 and job_counts(rerun.stdout + rerun.stderr)["preprocess"] == 1, (rerun.stdout + rerun.stderr)[-3000:]
    assert states(proj)["preprocess ckplus"]["state"] == "current"


# --- one writer per result folder ---------------------------------------------------------------
@pytest.mark.slow
def test_a_workflow_job_on_a_fold_a_cli_run_is_writing_is_refused_and_its_log_says_so(tmp_path):
    proj = small_project(tmp_path)
    for argv in (["synth", "--db", "ckplus"], ["preprocess", "--db", "ckplus"]):
        assert run_cli(proj, *argv).returncode == 0
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               FERSNET_PAUSE_AT="write:checkpoint.pt", FERSNET_PAUSE_S="300")
    cli = subprocess.Popen([str(BIN / "fersnet"), "train", "--params", "params.yaml", "--db", "ckplus",
                            "--model", "fersnet", "--fold", "0"], cwd=proj, env=env,
                           stderr=subprocess.PIPE, text=True)
    try:
        for line in cli.stderr:                              # wait until it is writing the fold
            if "paused at write:checkpoint.pt" in line:
                break
        target = FOLD.format(0) + "/metrics.json"
        second = run_cli(proj, "train", "--db", "ckplus", "--model", "fersnet", "--fold", "0")
        assert second.returncode == 2
        assert f"{FOLD.format(0)} is being written by another fersnet job now" in second.stderr
        wf = snakemake(proj, "--cores", "1", target, timeout=600)
        assert wf.returncode != 0
        log = (proj / "logs/train/ckplus_fersnet_seed0_fold0.log").read_text().splitlines()
        assert any("is being written by another fersnet job now" in line for line in log), log
        assert log[-1].startswith("fersnet job: exit code 2 after "), log
    finally:
        cli.send_signal(signal.SIGKILL)
        cli.wait()
    assert not (proj / target).exists()


@pytest.mark.slow
def test_dvc_repro_reprocesses_a_replaced_raw_image_so_dvc_lock_records_what_was_processed(tmp_path):
    proj = small_project(tmp_path)
    dvc = [str(BIN / "dvc"), "repro", "preprocess@ckplus"]
    first = run(dvc, proj, timeout=600)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    root = proj / "data/synthetic/ckplus"
    summary = proj / "data/processed/ckplus/summary.json"
    assert json.loads(summary.read_text())["raw_manifest"] == provenance.raw_manifest(root)
    lock_before = (proj / "dvc.lock").read_text()

    replace_one_raw_image(proj)
    again = run(dvc, proj, timeout=600)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "preprocess ckplus: files under data/synthetic/ckplus changed since it was processed" in again.stderr + again.stdout
    assert json.loads(summary.read_text())["raw_manifest"] == provenance.raw_manifest(root)   # processed now
    assert (proj / "dvc.lock").read_text() != lock_before
    status_now = run([str(BIN / "dvc"), "status", "preprocess@ckplus"], proj)
    assert "up to date" in status_now.stdout, status_now.stdout
