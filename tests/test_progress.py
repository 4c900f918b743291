"""Progress while the pipeline runs: a line per finished job with the time elapsed and an estimate of
what remains (fersnet/progress.py, read from real Snakemake output), job logs that fill while the
job runs (fersnet/jobrun.py), and a line per training epoch in them."""
from __future__ import annotations

import copy
import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_processed
from fersnet import demo, paths, progress

BIN = Path(sys.executable).parent

# Two rules as the workflow names them: a benchmarked training step (rule `<step>_<fold group>`,
# records at paths.benchmark_file) and one without records; `all` gathers them.
SNAKEFILE = """
from fersnet import paths
rule all:
    input: expand("out/{db}_{model}.txt", db=["a", "b"], model=["m1", "m2"]), "out/pool.txt"
rule train_fold0:
    output: "out/{db}_{model}.txt"
    benchmark: str(paths.benchmark_file("train", "{db}", "{model}", "fold0", seed=0))
    shell: "sleep 0.5; echo > {output}"
rule pool:
    input: expand("out/{db}_{model}.txt", db=["a", "b"], model=["m1", "m2"])
    output: "out/pool.txt"
    shell: "echo > {output}"
"""
LINE = re.compile(r"^fersnet demo: (\d+)/(\d+) done: (\S+)(?: \(([^)]*)\))? in .+?; .+? elapsed"
                  r"(?:, about (\d+(?:\.\d+)?) (s|min) left)?")


def workflow(tmp_path: Path) -> Path:
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    return tmp_path


def run_workflow(root: Path, cores: int = 1) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    rc = demo.run_with_progress([sys.executable, "-m", "snakemake", "--cores", str(cores)], None, ["all"],
                                root=root, out=out, err=err)
    return rc, out.getvalue().splitlines(), err.getvalue()


def seconds_left(match) -> float | None:
    if match.group(5) is None:
        return None
    return float(match.group(5)) * (60 if match.group(6) == "min" else 1)


@pytest.mark.slow
def test_a_real_snakemake_run_prints_a_line_per_finished_job_and_passes_its_output_through(tmp_path):
    rc, lines, err = run_workflow(workflow(tmp_path), cores=2)
    assert rc == 0, err[-2000:]
    assert "Finished jobid" in err and "steps (100%) done" in err          # Snakemake's own lines, unchanged
    said = [LINE.match(ln) for ln in lines]
    assert all(said) and len(said) == 6, lines                             # 4 training jobs, pool, all
    assert [int(m.group(1)) for m in said] == [1, 2, 3, 4, 5, 6] and {m.group(2) for m in said} == {"6"}
    assert sorted(m.group(4) for m in said if m.group(3) == "train_fold0") == ["a m1", "a m2", "b m1", "b m2"]
    assert said[-1].group(3) == "all" and seconds_left(said[-1]) is None   # the last line: nothing left
    # before pool has run once, its job is counted apart; after it, nothing is left untimed
    first = lines[0]
    assert first.endswith(("(+1 job(s) not timed yet)", ", 1 job(s) left, not timed yet")), first
    assert "not timed" not in lines[-2]


@pytest.mark.slow
def test_the_estimate_takes_a_rules_time_from_the_benchmark_records_of_earlier_jobs(tmp_path):
    root = workflow(tmp_path)
    for db in ("x", "y", "z"):                         # an earlier run's jobs of the rule: 100 s each
        record = root / paths.benchmark_file("train", db, "m1", "fold0", seed=0)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text("s\th:m:s\tmax_rss\n100.0\t0:01:40\t50.1\n")
    rc, lines, err = run_workflow(root, cores=1)
    assert rc == 0, err[-2000:]
    first = LINE.match(lines[0])
    assert first.group(3) == "train_fold0"
    # 3 training jobs left at the records' mean (3 x 100 s and this run's ~0.5 s: ~75 s each), one at a time
    assert 200 < seconds_left(first) < 240, lines[0]


def test_the_estimate_divides_the_work_left_by_the_parallelism_seen(tmp_path):
    """Snakemake 9's lines for two jobs run side by side, on a clock the test moves."""
    now = [0.0]
    tracker = progress.Progress(clock=lambda: now[0])
    plan = ["Provided cores: 2", "Job stats:", "job            count", "-----------  -------",
            "train_fold0        6", "all                1", "total              7", ""]
    for line in plan:
        assert tracker.feed(line) == []

    def start(jobid):
        for line in ("[Sun Dec  6 11:46:24 2026]", "rule train_fold0:", "    output: out/x.txt",
                     f"    jobid: {jobid}", "    wildcards: db=ckplus, model=fersnet, seed=0"):
            tracker.feed(line)

    def finish(jobid, k):
        tracker.feed(f"Finished jobid: {jobid} (Rule: train_fold0)")
        return tracker.feed(f"{k} of 7 steps ({100 * k // 7}%) done")
    start(1)
    start(2)
    now[0] = 50.0
    (said,) = finish(1, 1)
    # job 1 took 50 s; job 2 has run 50 s of its 50; 4 jobs wait: 200 s of work on 2 busy cores
    assert said == "1/7 done: train_fold0 (ckplus fersnet seed0) in 50 s; 50 s elapsed, about 1.7 min left"
    assert tracker.left(now[0]) == (100.0, 0)
    # job 2 overruns: it adds no work left; the parallelism seen falls to 110 s busy in 60 s
    assert tracker.left(60.0) == (pytest.approx(200 / (110 / 60)), 0)
    for line in ("[Sun Dec  6 11:47:24 2026]", "Error in rule train_fold0:", "    message: None", "    jobid: 2"):
        assert tracker.feed(line) == []
    # job 2 failed: it neither runs nor waits; 4 jobs of 50 s are left, one core busy so far
    assert tracker.left(50.0) == (200.0, 0)


def test_the_rules_of_every_fold_group_are_timed_together_per_fold(tmp_path):
    for group, seconds in (("folds0_4", 500.0), ("fold9", 100.0)):       # records of earlier jobs
        record = tmp_path / paths.benchmark_file("train", "ckplus", "fersnet", group, seed=0)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(f"s\th:m:s\n{seconds}\t-\n")
    assert progress.family("train_folds5_9") == ("train", 5) and progress.family("synth") == ("synth", 1)
    assert progress.benchmarked_seconds(tmp_path)("train") == [100.0, 100.0]
    tracker = progress.Progress(timings=progress.benchmarked_seconds(tmp_path))
    assert tracker.per_job("train_folds5_9") == 500.0 and tracker.per_job("train_fold3") == 100.0
    assert tracker.per_job("judge_fold3") is None          # no judge record, no judge finished yet


def test_durations_read_as_a_person_would_say_them():
    assert [progress.duration(s) for s in (0.4, 42, 210, 1500, 3900)] == \
        ["0 s", "42 s", "3.5 min", "25 min", "1 h 05 min"]


def test_a_job_log_fills_while_the_job_runs(tmp_path):
    """A Python command's print()s reach the log as they happen, not when the job ends."""
    log = tmp_path / "logs" / "job.log"
    code = "import time; print('epoch 1 done'); time.sleep(60)"
    job = subprocess.Popen([sys.executable, "-m", "fersnet.jobrun", str(log), "--", sys.executable, "-c", code])
    try:
        deadline = time.time() + 30
        while not (log.is_file() and "epoch 1 done" in log.read_text()):
            assert job.poll() is None, "the job ended"
            assert time.time() < deadline, f"the log is still {log.read_text()!r} while the job runs"
            time.sleep(0.1)
    finally:
        job.terminate()
        job.wait(timeout=30)
    assert log.read_text().splitlines()[-1].startswith("fersnet job: ended by signal SIGTERM")


def test_training_writes_a_line_per_epoch_when_its_output_is_a_log(test_cfg, capsys):
    from fersnet.training.train import train_job
    write_processed(Path(test_cfg["preprocess"]["out"]) / "ckplus", n_subjects=10, size=24)
    cfg = copy.deepcopy(test_cfg)
    cfg["train"].update(crop=16, batch_size=32, epochs=2)
    train_job(cfg, "ckplus", "no_mtl", 0)
    err = capsys.readouterr().err                       # not a terminal: no progress bar
    epochs = [ln for ln in err.splitlines() if ln.startswith("ckplus/no_mtl/fold0: epoch ")]
    assert [ln.split(" in ")[0] for ln in epochs] == [f"ckplus/no_mtl/fold0: epoch {e}/2" for e in (1, 2)]
    assert all(re.search(r"train acc \d+\.\d %, test acc \d+\.\d % \(diagnostic\)$", ln) for ln in epochs), epochs


@pytest.mark.slow
def test_the_demo_prints_progress_lines_between_snakemakes_own(tmp_path):
    from test_resume import project_env
    from test_workflow import make_project
    proj = make_project(tmp_path, **{"mlflow.enabled": False})
    target = "data/processed/ckplus/summary.json"
    done = subprocess.run([sys.executable, "-m", "fersnet.demo", "--profile", "test", "--cores", "1", target],
                          cwd=proj, env=project_env(proj), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    said = [LINE.match(ln) for ln in done.stdout.splitlines() if re.match(r"fersnet demo: \d+/", ln)]
    rules = [m.group(3) for m in said if m]
    assert len(said) == len(rules) and "synth" in rules and "preprocess" in rules, done.stdout
    assert said[-1].group(1) == said[-1].group(2)                  # the last job ends the count
    assert "Finished jobid" in done.stderr
