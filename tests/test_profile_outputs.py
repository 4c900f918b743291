"""One profile per project folder, and the demo's dvc.lock.

Every profile writes to the same folders (dvc.yaml fixes the paths; data and results are not cached),
so a run of one profile over another's outputs stops before its first job, naming them, and changes
no file; the ways out it names (a Git worktree, `dvc exp run --temp`) work. The demo records its run
in dvc.lock, so that the first `dvc repro` after it runs no stage.

The slow tests share one finished grid made by `python -m fersnet.demo` in a copy of the project
(tests/test_workflow.py's make_project: CK+, FERSNet, two folds) whose two profiles are both tiny:
`demo` is the test profile's settings, `test` the same with another learning rate.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from fersnet import config, ownership, status
from test_workflow import BIN, commit_project, job_counts, make_project, run, snakemake

FOLD0 = "results/ckplus/fersnet/seed0/fold0"


# --- what records a profile, and the message: plain functions ------------------------------------
def test_each_kind_of_output_answers_the_profile_it_recorded(tmp_path):
    run_dir, processed, report, stand_in, empty = (tmp_path / n for n in ("run", "processed", "report", "stand_in", "empty"))
    for folder in (run_dir, processed, report, stand_in, empty):
        folder.mkdir()
    (run_dir / "provenance.json").write_text(json.dumps({"fingerprint": "x", "profile": "demo"}))
    (processed / "summary.json").write_text(json.dumps({"db": "ckplus", "profile": "paper"}))
    (report / "summary.json").write_text(json.dumps({"profile": "test", "measured": {}}))
    ownership.mark(stand_in, ownership.step("synth", "ckplus"), profile="demo")
    ownership.mark(empty, ownership.step("train"))                  # a marker without a profile
    pooled = tmp_path / "synthesis_pooled.json"
    pooled.write_text(json.dumps({"fid": 1.0, "provenance": {"profile": "paper"}}))
    assert [status.recorded_profile(p) for p in (run_dir, processed, report, stand_in, pooled)] == \
        ["demo", "paper", "test", "demo", "paper"]
    assert status.recorded_profile(empty) is None and status.recorded_profile(tmp_path / "absent") is None


def test_the_message_names_both_profiles_the_first_outputs_their_count_and_the_ways_out():
    cfg = config.load(Path(__file__).resolve().parents[1] / "params.yaml", "test")
    found = [(Path(p), "demo") for p in ("data/synthetic/ckplus", "data/processed/ckplus", f"{FOLD0}",
                                          "results/ckplus/fersnet/seed0/fold1", "reports")]
    message = status.other_profile_message(cfg, found)
    assert "profile test was asked for" in message and "5 output(s) made under profile demo" in message
    assert "data/synthetic/ckplus, data/processed/ckplus, results/ckplus/fersnet/seed0/fold0 and 2 more" in message
    assert "git worktree add ../fersnet-test" in message and "dvc exp run --temp -S profile=test" in message
    assert "rm -r data/synthetic/ckplus data/processed/ckplus results/ckplus reports" in message
    assert "\n" not in message


def test_the_databases_a_run_writes_follow_its_targets():
    dbs = ["ckplus", "oulu", "mmi"]
    assert status.databases_reached(["data/synthetic/ckplus"], dbs) == ["ckplus"]
    assert status.databases_reached(["oulu", "results/mmi/fersnet/seed0/fold0/metrics.json"], dbs) == ["oulu", "mmi"]
    assert status.databases_reached(["all_folds"], dbs) == dbs and status.databases_reached([], dbs) == dbs


# --- a finished demo, then another profile beside it ---------------------------------------------------
def outputs_digest(proj: Path) -> dict[str, str]:
    """sha256 of every file the demo made (data/, results/, reports/) and of dvc.lock."""
    files = [p for top in ("data", "results", "reports") for p in (proj / top).rglob("*") if p.is_file()]
    files += [proj / "dvc.lock"]
    return {str(p.relative_to(proj)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory):
    """A project under Git whose demo (`python -m fersnet.demo`) has finished: CK+, FERSNet, two folds."""
    proj = make_project(tmp_path_factory.mktemp("demo"), models=["fersnet"],
                        **{"mlflow.enabled": False, "orchestration.folds_per_job": 2})
    raw = yaml.safe_load((proj / "params.yaml").read_text())
    raw["profile"] = "demo"
    raw["profiles"]["demo"] = copy.deepcopy(raw["profiles"]["test"])
    raw["profiles"]["test"]["train"]["lr"] = 1.0e-2                 # another profile: every training job differs
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    commit_project(proj)
    demo = run([str(BIN / "python"), "-m", "fersnet.demo", "--cores", "2"], proj, timeout=1800)
    assert demo.returncode == 0, (demo.stdout + demo.stderr)[-4000:]
    assert "recorded this run in dvc.lock" in demo.stdout, demo.stdout[-3000:]
    return proj


@pytest.mark.slow
def test_the_first_dvc_repro_after_the_demo_runs_no_stage_and_dvc_status_is_clean(demo_project):
    repro = run([str(BIN / "dvc"), "repro"], demo_project, timeout=600)
    assert repro.returncode == 0, (repro.stdout + repro.stderr)[-3000:]
    assert "Running stage" not in repro.stdout and "didn't change, skipping" in repro.stdout, repro.stdout[-3000:]
    state = run([str(BIN / "dvc"), "status"], demo_project)
    assert state.returncode == 0 and "Data and pipelines are up to date" in state.stdout, state.stdout[-3000:]


@pytest.mark.slow
def test_a_workflow_run_of_another_profile_beside_the_demo_stops_naming_its_folders_and_changes_no_file(demo_project):
    before = outputs_digest(demo_project)
    out = snakemake(demo_project, "--cores", "2", "all", "--config", "profile=test", timeout=600)
    said = out.stdout + out.stderr
    assert out.returncode != 0
    (line,) = [x for x in said.splitlines() if "was asked for" in x]
    assert "profile test was asked for" in line and "made under profile demo" in line
    assert "data/synthetic/ckplus, data/processed/ckplus, results/ckplus/fersnet/seed0/fold0 and" in line
    assert "nothing was changed" in line and "Traceback" not in said
    assert outputs_digest(demo_project) == before
    # the demo of another profile stops the same way before Snakemake starts, without advice to resume
    demo = run([str(BIN / "python"), "-m", "fersnet.demo", "--profile", "test", "--cores", "2"], demo_project)
    assert demo.returncode == 2 and "profile test was asked for" in demo.stderr, demo.stderr[-2000:]
    assert "resume" not in demo.stdout + demo.stderr and "Snakemake failed" not in demo.stderr
    assert outputs_digest(demo_project) == before
    # a dry run only plans: it shows the jobs, and says nothing of the clash
    plan = snakemake(demo_project, "-n", "all", "--config", "profile=test")
    assert plan.returncode == 0 and "train_folds0_1" in plan.stdout, plan.stderr[-3000:]


@pytest.mark.slow
def test_a_cli_verb_of_another_profile_over_a_demo_fold_is_refused_even_with_force(demo_project):
    before = outputs_digest(demo_project)
    said = {}
    for argv in (["train", "--db", "ckplus", "--model", "fersnet", "--fold", "0", "--force"],
                 ["score", "--db", "ckplus", "--model", "fersnet", "--fold", "0,1", "--force"],
                 ["preprocess", "--db", "ckplus"], ["synth", "--db", "ckplus"], ["report"]):
        out = run([str(BIN / "fersnet"), argv[0], "--params", "params.yaml", "--profile", "test", *argv[1:]],
                  demo_project, timeout=300)
        assert out.returncode == 2, (argv, out.stderr[-2000:])
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith(f"fersnet {argv[0]}: error: profile test was asked for"), line
        assert "made under profile demo" in line
        said[argv[0]] = line
    assert f"({FOLD0})" in said["train"] and "(reports)" in said["report"]
    assert outputs_digest(demo_project) == before
    # the same verb of the demo's own profile is not refused (it reuses the finished fold)
    same = run([str(BIN / "fersnet"), "train", "--params", "params.yaml", "--db", "ckplus", "--model", "fersnet",
                "--fold", "0"], demo_project, timeout=300)
    assert same.returncode == 0 and "reusing" in same.stderr, same.stderr[-2000:]


@pytest.mark.slow
def test_dvc_exp_run_of_another_profile_in_the_workspace_stops_and_changes_no_output(demo_project):
    before = outputs_digest(demo_project)
    params = (demo_project / "params.yaml").read_text()
    try:
        exp = run([str(BIN / "dvc"), "exp", "run", "-S", "profile=test"], demo_project, timeout=600)
        assert exp.returncode != 0
        assert "made under profile demo" in exp.stdout + exp.stderr, (exp.stdout + exp.stderr)[-3000:]
        assert outputs_digest(demo_project) == before
    finally:                               # DVC leaves params.yaml as -S set it
        (demo_project / "params.yaml").write_text(params)


@pytest.mark.slow
def test_dvc_exp_run_temp_of_another_profile_leaves_the_workspace_alone_and_brings_back_its_metrics(demo_project):
    before = outputs_digest(demo_project)
    params = (demo_project / "params.yaml").read_text()
    exp = run([str(BIN / "dvc"), "exp", "run", "--temp", "-S", "profile=test"], demo_project, timeout=1800)
    assert exp.returncode == 0, (exp.stdout + exp.stderr)[-4000:]
    assert set(re.findall(r"Running stage '([\w@]+)'", exp.stdout)) >= {"train", "score", "report"}
    name = re.search(r"Ran experiment\(s\): (\S+)", exp.stdout).group(1)
    assert outputs_digest(demo_project) == before
    assert (demo_project / "params.yaml").read_text() == params
    show = run([str(BIN / "dvc"), "exp", "show", "--json"], demo_project)
    assert show.returncode == 0, show.stderr[-3000:]
    (data,) = [r["data"] for entry in json.loads(show.stdout) for e in entry.get("experiments") or []
               for r in e["revs"] if r["name"] == name]
    assert data["params"]["params.yaml"]["data"]["profile"] == "test"
    accuracy = data["metrics"]["reports/headline.json"]["data"]["ckplus"]["fersnet"]["accuracy"]
    assert isinstance(accuracy, float) and 0.0 <= accuracy <= 100.0


@pytest.mark.slow
def test_another_profile_runs_in_a_git_worktree_of_the_project_beside_the_demo(demo_project):
    before = outputs_digest(demo_project)
    other = demo_project.parent / "fersnet-test"
    added = run(["git", "worktree", "add", "-q", str(other)], demo_project)
    assert added.returncode == 0, added.stderr
    try:
        out = snakemake(other, "--cores", "2", "data/processed/ckplus/summary.json", "--config", "profile=test",
                        timeout=600)
        assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
        assert status.recorded_profile(other / "data/processed/ckplus") == "test"
        assert status.recorded_profile(other / "data/synthetic/ckplus") == "test"
        assert outputs_digest(demo_project) == before
    finally:
        run(["git", "worktree", "remove", "--force", str(other)], demo_project)
        shutil.rmtree(other, ignore_errors=True)


def test_the_readme_paper_plan_is_the_dry_runs(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = re.search(r"^snakemake -n all_folds --config profile=paper .*# the plan: (\d+) training jobs \+ (\d+) judges$",
                     readme, re.M)
    assert line, "the README's paper plan line"
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    proj = make_project(tmp_path, databases=raw["databases"], models=raw["models"])
    out = snakemake(proj, "-n", "all_folds", "--config", "profile=paper")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = job_counts(out.stdout)
    assert (jobs["train"], jobs["judge"]) == (int(line.group(1)), int(line.group(2)))


def test_the_demo_records_dvc_lock_only_after_a_complete_run_of_params_yaml_own_profile(tmp_path, monkeypatch):
    from argparse import Namespace

    from fersnet.demo import record_in_dvc
    proj = make_project(tmp_path, models=["fersnet"], **{"mlflow.enabled": False})
    monkeypatch.chdir(proj)
    full = Namespace(dry_run=False, targets=["all"], cores="1")
    assert record_in_dvc(Namespace(dry_run=False, targets=["ckplus"], cores="1"), config.load("params.yaml")) is None
    assert record_in_dvc(Namespace(dry_run=True, targets=["all"], cores="1"), config.load("params.yaml")) is None
    other = record_in_dvc(full, config.load("params.yaml", "paper"))
    assert "dvc.lock not written: DVC runs params.yaml's profile, this run was profile paper" in other
    missing = record_in_dvc(full, config.load("params.yaml"))       # nothing made yet
    assert "dvc.lock not written" in missing and "not current" in missing and "preprocess ckplus" in missing
    assert not (proj / "dvc.lock").exists()
