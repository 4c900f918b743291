"""The cluster path, run for real: workflow/profiles/slurm against a one-node SLURM (tests/slurm_cluster.py).

The workflow runs in one test, so that the cluster starts once for it: the `ckplus` target (synth,
preprocess, training, judges, scoring, pooling, MLflow) goes through `snakemake --workflow-profile
workflow/profiles/slurm` in a copy of the project with one fold's run folder spoiled; Snakemake reports
that job failed and names its logs; after the fix a re-run submits that job (and what waited for it)
and nothing else. Every job has a record in `sacct`, and the results equal those of a local run of the
same target. A second test checks that the cluster leaves nothing behind, even after an error.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

import slurm_cluster
from test_workflow import BIN, job_counts, make_project

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TARGET = "ckplus"
# The heavy steps, which the profile sends to the `gpu` partition with one GPU each.
GPU_STEPS = {"train", "judge", "score"}
# Keys of a result file that describe the run rather than the result.
NOT_RESULTS = {"seconds", "fingerprint", "code_version", "provenance", "device"}


def require_slurm() -> None:
    reason = slurm_cluster.unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm():
    require_slurm()
    with slurm_cluster.SlurmCluster() as cluster:
        yield cluster


def project(folder: Path) -> Path:
    """The test project (CK+, 2 folds, one fold per job) with fersnet alone; MLflow is logged by the
    (database, model) parent jobs, which saves an MLflow start-up in every fold's job."""
    folder.mkdir()
    return make_project(folder, models=["fersnet"], **{"mlflow.log_jobs": False})


def fit_profile_to_node(proj: Path) -> None:
    """The site's edit of the profile for this node: memory requests it can give (a job of the `test`
    profile needs about 1 GB). Partitions, GPU requests and runtimes stay as shipped."""
    path = proj / "workflow/profiles/slurm/config.yaml"
    profile = yaml.safe_load(path.read_text())
    profile["default-resources"]["mem_mb"] = 1000
    for step in profile["set-resources"].values():
        step["mem_mb"] = 2000
    path.write_text(yaml.safe_dump(profile, sort_keys=False))


def env_for(cluster) -> dict[str, str]:
    return dict(cluster.env, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1")


def submit(proj: Path, cluster) -> subprocess.CompletedProcess:
    # Status checks 2 s after a job ended instead of the plugin's 40 s: these jobs take seconds.
    return subprocess.run([str(BIN / "snakemake"), "--workflow-profile", "workflow/profiles/slurm", TARGET,
                           "--slurm-init-seconds-before-status-checks", "2"],
                          cwd=proj, env=env_for(cluster), capture_output=True, text=True, timeout=900)


def run_id(out: subprocess.CompletedProcess) -> str:
    """The executor names every SLURM job of one Snakemake run by the run's id."""
    return re.search(r"SLURM run ID: (\S+)", out.stdout + out.stderr).group(1)


def step(rule: str) -> str:
    """train_fold1 -> train, as job_counts counts them."""
    return re.sub(r"_folds?\d+(_\d+)?$", "", rule)


def error_block(output: str, rule: str) -> str:
    return output.split(f"Error in rule {rule}:", 1)[1].split("\n\n", 1)[0]


def results(proj: Path) -> dict[str, dict]:
    """Every metrics.json, scores.json and pooled score of the target, without timings and provenance."""
    files = [f for f in (proj / "results" / TARGET).rglob("*.json")
             if f.name in ("metrics.json", "scores.json", "synthesis_pooled.json")]
    return {str(f.relative_to(proj)): {k: v for k, v in json.loads(f.read_text()).items() if k not in NOT_RESULTS}
            for f in files}


def mlflow_metrics(proj: Path) -> dict[tuple, dict[str, float]]:
    """The last value of each metric of every active MLflow run, keyed by (kind, model, fold), without
    the measurements of the jobs themselves (`seconds`, `job/<step>/...`: time and memory)."""
    with sqlite3.connect(proj / "mlflow.db") as db:
        runs = db.execute("select run_uuid from runs where lifecycle_stage = 'active'").fetchall()
        found = {}
        for (run,) in runs:
            tags = dict(db.execute("select key, value from tags where run_uuid = ?", (run,)).fetchall())
            metrics = dict(db.execute("select key, value from latest_metrics where run_uuid = ?", (run,)).fetchall())
            found[(tags.get("kind"), tags.get("model"), tags.get("fold"))] = {
                k: v for k, v in metrics.items() if "seconds" not in k and not k.startswith("job/")}
    return found


def test_slurm_profile_runs_a_database_reruns_only_the_failed_fold_and_matches_a_local_run(slurm, tmp_path):
    local = project(tmp_path / "local")
    proj = project(tmp_path / "slurm")
    fit_profile_to_node(proj)
    # The fault: a file fersnet did not write in the run folder of one fold, which training refuses.
    foreign = proj / f"results/{TARGET}/fersnet/seed0/fold1/notes.txt"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("someone else's notes\n")

    # The reference: the same target run locally, meanwhile (its jobs fill the SLURM run's waits).
    local_run = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", TARGET], cwd=local,
                                 env=env_for(slurm), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rule_log = proj / "logs/train/ckplus_fersnet_seed0_fold1.log"
    try:
        first = submit(proj, slurm)
        failed_log = rule_log.read_text()
        foreign.unlink()
        second = submit(proj, slurm)
        local_out, _ = local_run.communicate(timeout=900)
    finally:
        if local_run.poll() is None:
            local_run.kill()
            local_run.communicate()

    first_out, second_out = first.stdout + first.stderr, second.stdout + second.stderr
    jobs = slurm.sacct()
    first_jobs = [j for j in jobs if j["JobName"] == run_id(first)]
    second_jobs = [j for j in jobs if j["JobName"] == run_id(second)]

    # Run 1: only the spoiled fold's job failed, Snakemake says so and names its logs.
    assert first.returncode != 0
    failed = [j for j in first_jobs if j["State"] != "COMPLETED"]
    assert [(j["Comment"], j["State"]) for j in failed] == [("rule_train_fold1_wildcards_ckplus_fersnet_0", "FAILED")]
    block = error_block(first_out, "train_fold1")
    assert f"SLURM-job '{failed[0]['JobIDRaw']}' failed, SLURM status is: 'FAILED'" in block
    slurm_log = proj / f".snakemake/slurm_logs/rule_train_fold1/ckplus_fersnet_0/{failed[0]['JobIDRaw']}.log"
    assert str(rule_log.relative_to(proj)) in block and str(slurm_log) in block
    assert "holds files fersnet did not create (notes.txt" in failed_log
    assert "Error in rule train_fold1" in slurm_log.read_text()      # the job's own Snakemake output

    # Run 2, after the fix: the failed job and those that waited for it, none that had completed.
    assert second.returncode == 0, second_out[-4000:]
    assert all(j["State"] == "COMPLETED" for j in second_jobs), second_jobs
    done_first = {j["Comment"] for j in first_jobs if j["State"] == "COMPLETED"}
    done_second = [j["Comment"] for j in second_jobs]
    assert failed[0]["Comment"] in done_second
    assert not done_first & set(done_second)
    assert sorted(done_second) == sorted(["rule_train_fold1_wildcards_ckplus_fersnet_0",
                                          "rule_score_fold1_wildcards_ckplus_fersnet_0",
                                          "rule_pool_wildcards_ckplus_0",
                                          "rule_track_parent_wildcards_ckplus_fersnet"])

    # Every job of the target went through SLURM, once: all but the MLflow store's set-up and
    # the target itself, which Snakemake runs in its own process (localrules).
    assert local_run.returncode == 0, local_out[-4000:]
    planned = job_counts(local_out)
    local_rules = set(re.findall(r"^localrule (\w+):", first_out + second_out, re.M))
    assert local_rules == {"track_init", TARGET}
    completed = [j for j in first_jobs + second_jobs if j["State"] == "COMPLETED"]
    assert Counter(step(slurm_cluster.rule_of(j["Comment"])) for j in completed) == \
        Counter({s: n for s, n in planned.items() if s not in local_rules | {"total"}})
    assert len({j["Comment"] for j in completed}) == len(completed)
    for j in completed:
        heavy = step(slurm_cluster.rule_of(j["Comment"])) in GPU_STEPS
        assert j["Partition"] == ("gpu" if heavy else "cpu"), j
        assert ("gres/gpu=1" in j["AllocTRES"]) == heavy, j

    # The same numbers as the local run: every fold's metrics and scores, the pooled scores, MLflow.
    assert results(proj) == results(local)
    assert len(results(proj)) == 2 + 2 + 2 + 1      # fersnet and judge folds, 2 scored folds, pooled
    assert mlflow_metrics(proj) == mlflow_metrics(local)
    assert len(mlflow_metrics(proj)) == 2 * 2 + 2      # fold runs and parents of fersnet and judge


def test_the_cluster_stops_its_jobs_and_daemons_and_leaves_nothing_after_an_error(tmp_path):
    require_slurm()
    pid_file = tmp_path / "job.pid"
    with pytest.raises(RuntimeError, match="an error in the middle"):
        with slurm_cluster.SlurmCluster() as cluster:
            daemons = [proc.pid for _, proc in cluster.procs]
            folder = cluster.dir
            cluster.run("sbatch", "--output=/dev/null", "-D", str(tmp_path), "--wrap",
                        f"echo $$ > {pid_file}; exec sleep 600")
            deadline = time.monotonic() + 60
            while not pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert pid_file.exists(), cluster.sacct()
            raise RuntimeError("an error in the middle of a test")
    assert len(daemons) == 5                        # munged, mariadbd, slurmdbd, slurmctld, slurmd
    assert not [pid for pid in daemons if Path(f"/proc/{pid}").exists()]
    assert not Path(f"/proc/{pid_file.read_text().strip()}").exists()          # the job was cancelled
    assert not folder.exists()
