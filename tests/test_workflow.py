"""Orchestration: the real Snakemake (lint, dry runs, profiles, end to end) and DVC (repro twice).

Every run happens in a copy of the project's workflow files under tmp_path, with a params.yaml
shrunk to one database and two folds of the `test` profile, so the checkout stays untouched.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOW_FILES = ("workflow", "dvc.yaml", ".dvcignore", ".gitignore")


def make_project(tmp_path: Path, **overrides) -> Path:
    """A copy of the workflow with a tiny params.yaml (test profile, ckplus, 2 folds)."""
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in WORKFLOW_FILES:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, proj / name)
    # dvc.yaml lists the package's stage folders as dependencies
    shutil.copytree(ROOT / "fersnet", proj / "fersnet", ignore=shutil.ignore_patterns("__pycache__"))
    (proj / ".dvc").mkdir()
    (proj / ".dvc" / "config").write_text("[core]\n    no_scm = true\n    analytics = false\n")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profile"] = "test"
    raw["databases"] = ["ckplus"]
    raw["profiles"]["test"]["n_folds"] = 2
    for key, value in overrides.items():
        section, _, leaf = key.partition(".")
        if leaf:
            raw[section][leaf] = value
        else:
            raw[section] = value
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return proj


def run(cmd: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def snakemake(proj: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return run([str(BIN / "snakemake"), *args], proj, timeout)


def job_counts(output: str) -> dict[str, int]:
    """The `Job stats` table of a Snakemake run or dry run; the per-fold-group rules
    (train_fold0, train_folds0_1, ...) are counted under their step's name (train)."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts: dict[str, int] = {}
    for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M):
        step = re.sub(r"_folds?\d+(_\d+)?$", "", m.group(1))
        counts[step] = counts.get(step, 0) + int(m.group(2))
    return counts


def test_lint_reports_only_the_accepted_no_conda_warning(tmp_path):
    proj = make_project(tmp_path)
    out = snakemake(proj, "--lint")
    lints = {line.strip() for line in (out.stdout + out.stderr).splitlines() if line.startswith("    * ")}
    # One venv for the whole project (requirements.lock) instead of a conda env per rule; the
    # params snapshot of a run reaches the jobs as a global ({COMMON_ARGS}), not as a rule param,
    # because its name changes with every params edit and a param would re-run every job.
    # The same holds for the job wrapper ({JOBRUN}), which is the interpreter running Snakemake.
    assert lints == {"* Specify a conda environment or container for each rule.:",
                     "* Shell command directly uses variable COMMON_ARGS from outside of the rule:",
                     "* Shell command directly uses variable JOBRUN from outside of the rule:"}


def test_dry_run_plans_every_fold_model_judge_score_and_report(tmp_path):
    proj = make_project(tmp_path)
    out = snakemake(proj, "-n", "all")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = job_counts(out.stdout)
    assert jobs["train"] == 6 * 2 and jobs["judge"] == 2 and jobs["score"] == 4 * 2
    assert jobs["pool"] == 1 and jobs["report"] == 1 and jobs["track_init"] == 1
    assert jobs["track_parent"] == 7            # 6 models + judge
    assert "Using workflow specific profile workflow/profiles/default" in out.stdout + out.stderr


def test_readme_targets_per_database_and_scores_plan_only_their_jobs(tmp_path):
    proj = make_project(tmp_path)
    one_db = snakemake(proj, "-n", "ckplus")
    assert one_db.returncode == 0, one_db.stderr[-3000:]
    jobs = job_counts(one_db.stdout)
    assert jobs["train"] == 6 * 2 and jobs["score"] == 4 * 2 and "report" not in jobs
    scores = snakemake(proj, "-n", "all_scores")
    assert scores.returncode == 0, scores.stderr[-3000:]
    jobs = job_counts(scores.stdout)
    assert jobs["score"] == 4 * 2 and jobs["pool"] == 1 and "report" not in jobs


def test_count_params_prints_the_paper_scale_generator_size(tmp_path):
    out = run([str(BIN / "fersnet"), "count-params", "--profile", "paper", "--write", str(tmp_path / "p.md")], ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    table = (tmp_path / "p.md").read_text()
    assert "fersnet" in table and "stargan" in table and "|" in table


def test_config_profile_switch_reaches_the_cli_and_overrides_travel_in_a_params_copy(tmp_path):
    proj = make_project(tmp_path)
    out = snakemake(proj, "all_folds", "-n", "-p", "--config", "profile=paper")
    assert out.returncode == 0, out.stderr[-3000:]
    snap = re.search(r"--params (\.snakemake/fersnet/params-\w+\.yaml)", out.stdout).group(1)
    assert yaml.safe_load((proj / snap).read_text())["profile"] == "paper"
    assert job_counts(out.stdout)["train"] == 6 * 10
    out = snakemake(proj, "all_folds", "-n", "-p", "--config", "databases=[oulu]")
    assert out.returncode == 0, out.stderr[-3000:]
    copy = re.search(r"--params (\.snakemake/fersnet/params-\w+\.yaml)", out.stdout).group(1)
    assert yaml.safe_load((proj / copy).read_text())["databases"] == ["oulu"]
    assert "results/oulu/fersnet/seed0/fold1/metrics.json" in out.stdout


def test_bad_params_stop_snakemake_with_the_key_named(tmp_path):
    proj = make_project(tmp_path, n_folds=1)
    out = snakemake(proj, "-n")
    assert out.returncode != 0
    assert "`n_folds` is 1" in out.stdout + out.stderr


def test_fes_da_waits_for_fersnet_and_scores_wait_for_their_judge(tmp_path):
    proj = make_project(tmp_path)
    out = snakemake(proj, "-n", "results/ckplus/fes_da/seed0/fold1/metrics.json",
                    "results/ckplus/stargan/seed0/fold0/synthesis/scores.json")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "results/ckplus/fersnet/seed0/fold1/metrics.json" in out.stdout
    assert "results/ckplus/judge/seed0/fold0/metrics.json" in out.stdout


def test_fes_da_real_waits_for_the_fersnet_run_of_its_fold(tmp_path):
    proj = make_project(tmp_path)
    out = snakemake(proj, "-n", "results/ckplus/fes_da_real/seed0/fold1/metrics.json")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "results/ckplus/fersnet/seed0/fold1/metrics.json" in out.stdout
    assert "results/ckplus/fes_da_real/seed0/fold1/metrics.json" in out.stdout
    assert "results/ckplus/fes_da/seed0/fold1" not in out.stdout


def test_folds_per_job_groups_the_folds_of_each_model_step_into_one_process(tmp_path):
    proj = make_project(tmp_path, **{"orchestration.folds_per_job": 2})
    out = snakemake(proj, "-n", "-p", "all")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = job_counts(out.stdout)
    assert jobs["train"] == 6 and jobs["judge"] == 1 and jobs["score"] == 4
    assert re.search(r"fersnet score --params \.snakemake/fersnet/params-\w+\.yaml --db ckplus --model stargan "
                     r"--fold 0,1", out.stdout)


def test_gpu_jobs_take_a_share_limited_by_the_default_profile(tmp_path):
    proj = make_project(tmp_path, **{"orchestration.gpu_jobs_per_device": 2})
    raw = yaml.safe_load((proj / "params.yaml").read_text())
    raw["train"]["device"] = "cuda"
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    out = snakemake(proj, "-n", "all_folds")
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"rule train_fold0:(?:\n    .*)*\n    resources: .*gpu=1, gpu_share=50", out.stdout)
    profile = yaml.safe_load((ROOT / "workflow/profiles/default/config.yaml").read_text())
    assert profile["resources"]["gpu_share"] == 100


def test_slurm_profile_dry_run_sends_training_to_the_gpu_partition(tmp_path):
    proj = make_project(tmp_path)
    out = snakemake(proj, "--profile", "workflow/profiles/slurm", "-n", "all_folds")
    assert out.returncode == 0, out.stderr[-3000:]
    out = snakemake(proj, "--workflow-profile", "workflow/profiles/slurm", "-n", "all_folds")
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"rule train_fold0:(?:\n    .*)*\n    resources: .*slurm_partition=gpu", out.stdout)


def test_dvc_yaml_stages_resolve_into_the_expected_graph(tmp_path):
    proj = make_project(tmp_path)
    out = run([str(BIN / "dvc"), "dag", "--md"], proj)
    assert out.returncode == 0, out.stderr[-3000:]
    for stage in ("synth@ckplus", "preprocess@ckplus", "train", "score", "report"):
        assert stage in out.stdout
    assert "synth@oulu" not in out.stdout          # foreach follows params `databases`


def mlflow_fold_runs(proj: Path) -> int:
    with sqlite3.connect(proj / "mlflow.db") as db:
        return db.execute("select count(*) from runs r join tags t on t.run_uuid = r.run_uuid "
                          "where t.key = 'kind' and t.value = 'fold' and r.lifecycle_stage = 'active'"
                          ).fetchone()[0]


@pytest.mark.slow
def test_snakemake_runs_the_tiny_grid_end_to_end_makes_its_one_page_report_and_then_has_nothing_to_do(tmp_path):
    # One fold per job (the default). The models whose jobs differ: FERSNet, FES-DA (waiting for
    # FERSNet's checkpoint) and StarGAN. w/o MTL and w/o ConvFLU run the same commands as FERSNet with
    # other switches, FES-DA's real-only control those of FES-DA (they run in the rerun, tracking
    # and training tests; their place in the graph: the dry runs).
    proj = make_project(tmp_path, models=["fersnet", "fes_da", "stargan"])
    out = snakemake(proj, "--cores", "2", "all", timeout=1800)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert json.loads((proj / "reports" / "summary.json").read_text())
    assert (proj / "results/ckplus/stargan/seed0/synthesis_pooled.json").is_file()
    assert (proj / "benchmarks/train/ckplus_fes_da_seed0_fold1.tsv").is_file()
    parent = json.loads((proj / "results/_workflow/parent_ckplus_fersnet.json").read_text())
    assert parent["n_folds_done"] == 2 and "accuracy" in parent["metrics"]
    assert mlflow_fold_runs(proj) == 4 * 2          # 3 models + judge, 2 folds each
    check_one_page_report(proj)
    check_demo_quality_bench(proj)
    again = snakemake(proj, "--cores", "2", "all")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def check_demo_quality_bench(proj: Path) -> None:
    """bench/demo_quality.py reads the run's fold files: its means are theirs, its verdict follows them."""
    out = run([str(BIN / "python"), str(ROOT / "bench/demo_quality.py"), "--results", "results",
               "--before", "ckplus=90,0", "--out", "quality.json"], proj)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads((proj / "quality.json").read_text())
    assert doc["schema"] == "fersnet-bench/results/1"        # bench/README.md, "Results"
    quality = doc["numbers"]["per_database"]["ckplus"]
    fer = [100 * json.loads((proj / f"results/ckplus/fersnet/seed0/fold{k}/metrics.json").read_text())["accuracy"]
           for k in (0, 1)]
    real = [100 * json.loads((proj / f"results/ckplus/judge/seed0/fold{k}/metrics.json").read_text())["accuracy"]
            for k in (0, 1)]
    assert quality["fer"]["mean"] == pytest.approx(np.mean(fer), abs=0.01)
    assert quality["fer"]["se"] == pytest.approx(np.std(fer, ddof=1) / np.sqrt(2), abs=0.01)
    assert quality["judge_on_real"]["mean"] == pytest.approx(np.mean(real), abs=0.01)
    fer_ok = quality["fer"]["mean"] >= 90 - quality["fer"]["se"]
    assert quality["fer"]["at_least_before_minus_se"] is fer_ok
    assert quality["judge_on_synthesis"]["at_least_before_minus_se"] is True


def check_one_page_report(proj: Path) -> None:
    """`snakemake --report`: one page holding the figures, the tables and the PDF, with captions."""
    made = snakemake(proj, "--report", "report.html")
    assert made.returncode == 0, (made.stdout + made.stderr)[-4000:]
    page = (proj / "report.html").read_text()
    results = json.loads(re.search(r"^\s*var results = (\{.*\});\s*$", page, re.M).group(1))
    categories = json.loads(re.search(r"^\s*var categories = (\{.*\});\s*$", page, re.M).group(1))

    def embedded(path: str) -> bytes:        # the file itself, inside the page (no links to files)
        uri = results[path]["data_uri"]
        assert uri.startswith("data:"), path
        return base64.b64decode(uri.split("base64,", 1)[1])

    figure = "reports/figures/confusion_ckplus.png"
    assert results[figure]["mime_type"] == "image/png"
    assert embedded(figure) == (proj / figure).read_bytes()
    assert figure in categories["CK+"]["FERSNet"]
    tables = sorted(p.relative_to(proj).as_posix() for p in (proj / "reports/tables").glob("*.html"))
    assert "reports/tables/fer_accuracy.html" in tables and "reports/tables/confusion_ckplus.html" in tables
    for table in tables:
        assert results[table]["mime_type"] == "text/html"
        assert b"<table>" in embedded(table) and b"\\" not in embedded(table), table
    if shutil.which("pdflatex"):
        assert embedded("reports/report.pdf")[:5] == b"%PDF-"
    assert "Confusion matrix of FERSNet" in results[figure]["caption"]


def test_the_one_page_reports_front_page_says_when_it_holds_no_pdf(tmp_path):
    """Without pdflatex on PATH the report holds no PDF: its front page says so and how to add it;
    with it, the front page promises the PDF and does not say that."""
    proj = make_project(tmp_path)
    bare = tmp_path / "bin-without-latex"          # the system's tools, less pdflatex
    bare.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(folder).glob("*"):
            if tool.name != "pdflatex" and not (bare / tool.name).exists():
                (bare / tool.name).symlink_to(tool)
    from fersnet import config
    from fersnet.reports import contents
    cfg = config.load(proj / "params.yaml")
    for item in contents.report_items(cfg, pdf=True):   # stand-ins for a finished report's files
        (proj / "reports" / item.path).parent.mkdir(parents=True, exist_ok=True)
        (proj / "reports" / item.path).write_bytes(b"%PDF-" if item.path.endswith(".pdf") else b"<table></table>")
    cases = [(f"{BIN}{os.pathsep}{bare}", False)]
    if shutil.which("pdflatex"):
        cases.append((f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", True))
    for path, latex in cases:
        env = dict(os.environ, PATH=path)
        made = subprocess.run([str(BIN / "snakemake"), "--report", "report.html"], cwd=proj, env=env,
                              capture_output=True, text=True, timeout=300)
        assert made.returncode == 0, (made.stdout + made.stderr)[-3000:]
        page = (proj / "report.html").read_text()
        assert ("No PDF in this report" in page) is (not latex), latex
        assert ("the whole PDF report" in page) is latex, latex


@pytest.mark.slow
def test_dvc_repro_runs_everything_a_second_repro_is_a_no_op_and_experiments_keep_their_numbers(tmp_path):
    # folds_per_job 2: this test also covers jobs that run several folds in one process. DVC wraps the
    # Snakemake targets, so one model (its scores waiting for the judge) tests it as well as six;
    # the tiny Snakemake grid above runs the models whose jobs differ.
    proj = make_project(tmp_path, models=["fersnet"],
                        **{"mlflow.enabled": False, "orchestration.folds_per_job": 2})
    first = run([str(BIN / "dvc"), "repro"], proj, timeout=1800)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    assert (proj / "reports" / "summary.json").is_file() and (proj / "dvc.lock").is_file()
    second = run([str(BIN / "dvc"), "repro"], proj)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "didn't change, skipping" in second.stdout and "Running stage" not in second.stdout
    metrics = run([str(BIN / "dvc"), "metrics", "show", "--json"], proj)
    assert metrics.returncode == 0, metrics.stderr[-3000:]
    (shown,) = [m["data"]["reports/headline.json"]["data"] for m in json.loads(metrics.stdout).values()]
    numbers = [v for _, v in leaves(shown) if isinstance(v, (int, float))]
    assert 0 < len(numbers) <= 100 and metric(shown, "fersnet", "accuracy") == pytest.approx(
        json.loads((proj / "reports" / "summary.json").read_text())["measured"]["ckplus"]["fersnet"]["accuracy_mean"])
    table = run([str(BIN / "dvc"), "metrics", "show"], proj)
    assert table.returncode == 0 and max(len(line) for line in table.stdout.splitlines()) < 200, table.stdout
    plots = run([str(BIN / "dvc"), "plots", "show", "--json"], proj)
    assert plots.returncode == 0 and "confusion/ckplus.csv" in plots.stdout, plots.stderr[-3000:]
    # titles in words; the confusion matrix with the true expressions as rows, as in the report
    assert "FERSNet confusion matrix" in plots.stdout and "fraction of training" in plots.stdout
    assert "true expression" in plots.stdout and "predicted expression" in plots.stdout

    # experiments need Git: commit the project. A scoring-only param re-runs scoring and the report alone;
    # a training param retrains. The report's metrics and plot data are cached by DVC (dvc.yaml), so each
    # experiment commit holds its own numbers, while data and results are git-ignored and not cached.
    commit_project(proj)
    names = []
    for setting, stages in (("fid.kid_subsets=50", {"score", "report"}), ("train.lr=1.0e-2", {"train", "score", "report"})):
        exp = run([str(BIN / "dvc"), "exp", "run", "-S", setting], proj, timeout=1500)
        assert exp.returncode == 0, (exp.stdout + exp.stderr)[-4000:]
        ran = set(re.findall(r"Running stage '([\w@]+)'", exp.stdout))
        assert ran == stages, (setting, exp.stdout[-3000:])
        names.append(re.search(r"Ran experiment\(s\): (\S+)", exp.stdout).group(1))

    show = run([str(BIN / "dvc"), "exp", "show", "--json"], proj)
    assert show.returncode == 0, show.stderr[-3000:]
    runs = {r["name"]: r["data"] for entry in json.loads(show.stdout) for e in entry.get("experiments") or []
            for r in e["revs"]}
    for name, lr in zip(names, (0.002, 0.01)):        # the second experiment keeps the first one's setting
        data = runs[name]
        assert data["params"]["params.yaml"]["data"]["train"]["lr"] == lr
        assert data["params"]["params.yaml"]["data"]["fid"]["kid_subsets"] == 50
        summary = data["metrics"]["reports/headline.json"]["data"]
        value = metric(summary, "fersnet", "accuracy")
        assert isinstance(value, float) and 0.0 <= value <= 100.0, (name, value)
    table = run([str(BIN / "dvc"), "exp", "show", "--only-changed", "--csv"], proj).stdout.splitlines()
    for name in names:                       # `!` is what dvc exp show prints for a missing metric
        (row,) = [line for line in table if line.startswith(name + ",")]
        assert "!" not in row.split(","), row

    diff = run([str(BIN / "dvc"), "metrics", "diff", *names, "--json"], proj)
    assert diff.returncode == 0, diff.stderr[-3000:]
    changed = json.loads(diff.stdout)["reports/headline.json"]
    assert any(isinstance(v["old"], float) and isinstance(v["new"], float) for v in changed.values())

    plots = run([str(BIN / "dvc"), "plots", "diff", *names, "--json"], proj)
    assert plots.returncode == 0, plots.stderr[-3000:]
    data = json.loads(plots.stdout)["data"]
    for plot in ("reports/plots/curves/ckplus_fersnet.csv", "reports/plots/confusion/ckplus.csv"):
        values = data[plot][0]["content"]["data"]["values"]
        assert {v["rev"] for v in values} == set(names), plot
    curve = data["reports/plots/curves/ckplus_fersnet.csv"][0]["content"]["data"]["values"]
    assert all(0.0 <= float(v["test_accuracy"]) <= 100.0 for v in curve)


def commit_project(proj: Path) -> None:
    """The project under Git (DVC experiments are Git commits), with the checkout's .gitignore."""
    (proj / ".dvc" / "config").write_text("[core]\n    analytics = false\n    autostage = false\n")
    git_env = ["-c", "user.name=fersnet-test", "-c", "user.email=test@example.invalid"]
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", *git_env, "commit", "-q", "-m", "t"]):
        assert run(cmd, proj).returncode == 0, cmd


def leaves(tree, path=()):
    """(key path, value) of every leaf of a nested dict."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from leaves(v, path + (k,))
    else:
        yield path, tree


def metric(metrics: dict, *tail: str):
    """The one value of a metrics file whose key path ends with `tail` (e.g. fersnet, accuracy)."""
    (value,) = [v for path, v in leaves(metrics) if path[-len(tail):] == tail]
    return value


def test_demo_command_runs_snakemake_all_with_the_profile_and_names_the_outputs(tmp_path):
    from argparse import Namespace

    from fersnet import config
    from fersnet.demo import snakemake_command, where_outputs_are
    proj = make_project(tmp_path)
    cfg = config.load(proj / "params.yaml")
    cmd = snakemake_command(Namespace(cores="2", dry_run=True, targets=["all"]), cfg)
    out = run(cmd, proj)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "report" in out.stdout and "track_parent" in out.stdout
    message = where_outputs_are(cfg)
    assert "report.pdf" in message and "mlflow ui --backend-store-uri sqlite:///" in message
    assert "snakemake --report report.html" in message


def _history_of(proj: Path, model: str, fold: int, seed: int = 0):
    """A CK+ run's history.csv without its timings."""
    import pandas as pd
    return pd.read_csv(proj / f"results/ckplus/{model}/seed{seed}/fold{fold}/history.csv").drop(columns=["seconds"])


def _set_params(proj: Path, **changes) -> None:
    raw = yaml.safe_load((proj / "params.yaml").read_text())
    for key, value in changes.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.slow
def test_changed_params_and_data_rerun_exactly_the_jobs_they_change_and_retrain_from_scratch(tmp_path):
    proj = make_project(tmp_path, **{"mlflow.enabled": False, "orchestration.folds_per_job": 2})
    targets = ["results/ckplus/no_mtl/seed0/fold0/metrics.json", "results/ckplus/judge/seed0/fold0/metrics.json"]
    first = snakemake(proj, "--cores", "2", *targets, timeout=900)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    run = proj / "results/ckplus/no_mtl/seed0/fold0"
    before = json.loads((run / "metrics.json").read_text())
    history = _history_of(proj, "no_mtl", 0)

    # a training key: the training job re-runs, the judge does not; a runtime-only key: nothing
    _set_params(proj, **{"train.threads": 2})
    assert "Nothing to be done" in (lambda o: o.stdout + o.stderr)(snakemake(proj, "-n", *targets))
    _set_params(proj, **{"train.threads": 1, "train.lr": 0.01})
    plan = snakemake(proj, "-n", *targets)
    assert plan.returncode == 0 and job_counts(plan.stdout) == {"train": 1, "total": 1}, plan.stdout[-3000:]
    _set_params(proj, **{"train.lr": 0.002})

    # data settings, and a root pointing at another valid tree: the folds retrain from scratch (the
    # training target alone: the judge's rerun on new data is not what is checked here)
    other = run_cli(proj, "synth", "--db", "ckplus", "--out", "other", "--set", "synth.data_seed=7")
    assert other.returncode == 0, other.stderr[-3000:]
    for change in ({"data.ckplus.frames": 1}, {"data.ckplus.include_neutral": True},
                   {"data.ckplus.root": "other/ckplus"}):
        _set_params(proj, **change)
        again = snakemake(proj, "--cores", "2", targets[0], timeout=900)
        assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
        after = json.loads((run / "metrics.json").read_text())
        assert after["fingerprint"] != before["fingerprint"], change
        log = (proj / "logs/train/ckplus_no_mtl_seed0_folds0_1.log").read_text()
        assert "resuming" not in log, change            # never resumed the old data's checkpoint
        new_history = _history_of(proj, "no_mtl", 0)
        assert not new_history.equals(history), change
        before, history = after, new_history
    assert "neutral" in after["classes"]


def run_cli(proj: Path, *argv: str) -> subprocess.CompletedProcess:
    return run([str(BIN / "fersnet"), argv[0], "--params", "params.yaml", *argv[1:]], proj, timeout=300)


@pytest.mark.slow
def test_a_params_edit_during_a_run_reaches_none_of_its_jobs(tmp_path):
    import time
    proj = make_project(tmp_path, **{"mlflow.enabled": False, "orchestration.folds_per_job": 2})
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", "results/ckplus/no_mtl/seed0/fold0/metrics.json"],
                            cwd=proj, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not (proj / "data/synthetic/ckplus").is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    _set_params(proj, **{"train.lr": 0.5})          # the stand-in exists; preprocess and training not yet
    edited = time.time()
    out, _ = proc.communicate(timeout=600)
    assert (proj / "data/processed/ckplus/summary.json").stat().st_mtime > edited   # jobs ran after the edit
    prov = json.loads((proj / "results/ckplus/no_mtl/seed0/fold0/provenance.json").read_text())
    assert prov["params"]["train.lr"] == 0.002                  # ... with the params of the run's start
    assert proc.returncode != 0 and "was edited while this run was going on" in out
    # the next run applies the edit: the training job re-runs with it
    again = snakemake(proj, "--cores", "1", "results/ckplus/no_mtl/seed0/fold0/metrics.json", timeout=600)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    prov = json.loads((proj / "results/ckplus/no_mtl/seed0/fold0/provenance.json").read_text())
    assert prov["params"]["train.lr"] == 0.5


def test_a_duplicate_key_in_params_stops_snakemake_naming_it(tmp_path):
    proj = make_project(tmp_path)
    text = (proj / "params.yaml").read_text()
    (proj / "params.yaml").write_text(text.replace("n_folds: 10\n", "n_folds: 10\nn_folds: 3\n", 1))
    out = snakemake(proj, "-n")
    assert out.returncode != 0 and "duplicate key `n_folds`" in out.stdout + out.stderr


def test_seeds_fan_out_every_job_per_seed_and_the_parent_steps_wait_for_all_of_them(tmp_path):
    proj = make_project(tmp_path, run_seeds=[0, 1, 2])
    out = snakemake(proj, "-n", "all")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = job_counts(out.stdout)
    assert jobs["train"] == 6 * 2 * 3 and jobs["judge"] == 2 * 3 and jobs["score"] == 4 * 2 * 3
    assert jobs["pool"] == 3 and jobs["report"] == 1 and jobs["track_parent"] == 7
    for seed in (0, 1, 2):
        assert f"results/ckplus/fes_da/seed{seed}/fold1/metrics.json" in out.stdout
        assert f"--fold 1 --seed {seed}" in out.stdout or f"--seed {seed}" in out.stdout
    # the README's form: seeds given on the command line
    (tmp_path / "cli").mkdir()
    cli = snakemake(make_project(tmp_path / "cli"), "-n", "ckplus", "--config", "run_seeds=[0,1,2]")
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert job_counts(cli.stdout)["train"] == 6 * 2 * 3
    # FES-DA of seed 1 fine-tunes fersnet of seed 1, never another seed's
    one = snakemake(proj, "-n", "results/ckplus/fes_da/seed1/fold0/metrics.json")
    assert "results/ckplus/fersnet/seed1/fold0/metrics.json" in one.stdout
    assert "seed0" not in one.stdout and "seed2" not in one.stdout


@pytest.mark.slow
def test_two_seeds_by_two_folds_run_report_the_seed_spread_and_log_a_run_per_seed(tmp_path):
    # FERSNet alone, its two folds in one process: the seeds fan out the jobs of every step alike. The
    # (database, model) parent steps log the fold runs (mlflow.log_jobs false; the tiny grid logs per job).
    # Seeds 0 and 3: a seed is a value, not a position in the list.
    seeds = [0, 3]
    proj = make_project(tmp_path, run_seeds=seeds, models=["fersnet"],
                        **{"orchestration.folds_per_job": 2, "mlflow.log_jobs": False})
    out = snakemake(proj, "--cores", "2", "all", timeout=1800)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    for seed in seeds:
        for fold in (0, 1):
            run = proj / f"results/ckplus/fersnet/seed{seed}/fold{fold}"
            assert json.loads((run / "config.json").read_text())["seed"] == seed
            assert 0.0 <= json.loads((run / "metrics.json").read_text())["accuracy"] <= 1.0
            assert (proj / f"results/ckplus/judge/seed{seed}/fold{fold}/metrics.json").is_file()
            assert (run / "synthesis" / "scores.json").is_file()
        assert json.loads((proj / f"results/ckplus/fersnet/seed{seed}/synthesis_pooled.json").read_text())["seed"] == seed
    # different seeds train different networks: their losses differ
    losses = {s: _history_of(proj, "fersnet", 0, seed=s).to_numpy().tobytes() for s in seeds}
    assert len(set(losses.values())) == 2
    assert mlflow_fold_runs(proj) == 2 * 2 * 2      # (fersnet, judge) x 2 seeds x 2 folds
    summary = json.loads((proj / "reports" / "summary.json").read_text())
    fer = summary["measured"]["ckplus"]["fersnet"]
    assert summary["seeds"] == seeds and fer["seeds"] == seeds and fer["n_runs"] == 4
    per_seed = [100 * sum(json.loads((proj / f"results/ckplus/fersnet/seed{s}/fold{k}/metrics.json").read_text())
                          ["accuracy"] for k in (0, 1)) / 2 for s in seeds]
    assert fer["accuracy_per_seed"] == pytest.approx({f"seed{s}": v for s, v in zip(seeds, per_seed)})
    assert fer["seed_std"] == pytest.approx(float(np.std(per_seed, ddof=1)))
    assert fer["accuracy_mean"] == pytest.approx(float(np.mean(per_seed)))
    again = snakemake(proj, "--cores", "2", "all")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
