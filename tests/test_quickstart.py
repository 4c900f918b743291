"""The README's Quickstart does what it says: the Python check, the CPU-only torch install, the
one-command Inception weights, the licence, and user-facing text that speaks to users.

The commands are taken from README.md itself, so a changed README is tested as written.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
HAVE_MAKE = shutil.which("make") is not None
needs_make = pytest.mark.skipif(not HAVE_MAKE, reason="make not installed")


def make(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env)


def readme_line(start: str) -> str:
    """The one line of a README code block that starts with `start`."""
    (line,) = [ln for ln in README.splitlines() if ln.startswith(start)]
    return line


def lock_pins(*names: str) -> list[str]:
    pins = {ln.split("==")[0]: ln.strip() for ln in (ROOT / "requirements.lock").read_text().splitlines() if "==" in ln}
    return [pins[n] for n in names]


def test_one_python_range_is_stated_by_pyproject_the_makefile_and_the_readme():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=3.11"
    assert re.search(r"^PY_MIN := 3\.11$", (ROOT / "Makefile").read_text(), re.M)
    assert "Python 3.11 or newer" in README
    assert sys.version_info[:2] >= (3, 11)          # the tests themselves run on a supported Python


@needs_make
def test_make_accepts_a_supported_python_and_names_the_version_of_one_it_refuses():
    assert make("check-python", f"PY={sys.executable}").returncode == 0
    too_old = make("check-python", f"PY={sys.executable}", "PY_MIN=3.99")
    assert too_old.returncode != 0
    found = "%d.%d" % sys.version_info[:2]
    assert f"needs Python 3.99 or newer; {sys.executable} is Python {found}" in too_old.stderr
    missing = make("check-python", "PY=/nonexistent/python3")
    assert missing.returncode != 0 and "/nonexistent/python3 not found" in missing.stderr


@needs_make
def test_setting_up_the_venv_checks_python_before_anything_else():
    plan = make("-n", "-B", "venv").stdout.splitlines()     # -n: print the recipe, run nothing
    assert "sys.version_info[:2] >= need" in plan[0]
    assert any("-m venv .venv" in ln for ln in plan[1:])


@needs_make
def test_the_readmes_cpu_torch_command_is_what_make_venv_torch_cpu_runs(tmp_path):
    pip = readme_line("It runs `pip install --index-url").split("`")[1]
    assert pip == "pip install --index-url https://download.pytorch.org/whl/cpu " + " ".join(
        lock_pins("torch", "torchvision"))                  # the lock's pins: torchvision matches torch
    assert "make venv TORCH=cpu" in README
    plan = make("-n", "-B", "venv", "TORCH=cpu").stdout.splitlines()
    assert any(ln.replace(" --quiet", "").endswith(pip) for ln in plan)     # .venv/bin/pip, quietly
    (grep,) = [ln for ln in plan if ln.startswith("grep ")]
    # run the recipe's own filter of the lock into tmp_path: everything but torch and the CUDA stack
    out = tmp_path / "requirements-cpu.txt"
    subprocess.run(grep.replace(".venv/requirements-cpu.txt", str(out)), shell=True, cwd=ROOT, check=True)
    kept = out.read_text().splitlines()
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    dropped = sorted(set(lock) - set(kept))
    assert all(re.match(r"(torch|torchvision|triton|nvidia-.+|cuda-.+)==", d) for d in dropped)
    assert len(dropped) >= 3 and not [k for k in kept if re.match(r"(torch|nvidia-|triton)", k)]
    assert any(k.startswith("scikit-learn==") for k in kept) and any(k.startswith("mlflow==") for k in kept)
    without_cuda = make("-n", "-B", "venv", "TORCH=cuda").stdout
    assert "download.pytorch.org" not in without_cuda and "-r requirements.lock" in without_cuda


def test_the_readmes_inception_command_puts_the_weights_where_scoring_loads_them(tmp_path):
    """The README's curl line, with the URL swapped for a local file of the real architecture."""
    import torch
    from fersnet.metrics import fid

    curl = readme_line("curl -L --create-dirs -o ")
    assert curl.split()[-1] == fid.WEIGHTS_URL and fid.WEIGHTS_FILE in curl.split()[-2]
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    weights = tmp_path / "random_inception.pth"
    torch.manual_seed(0)
    torch.save(fid.fid_inception_architecture().state_dict(), weights)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    subprocess.run(curl.replace(fid.WEIGHTS_URL, weights.as_uri()), shell=True, check=True, env=env,
                   capture_output=True, timeout=60)
    probe = ("from fersnet import config; from fersnet.metrics import fid; "
             "cfg = config.load('params.yaml', 'test'); model, info = fid.load_inception(cfg); "
             "print(info['source'], info['file'])")
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    source, path = run.stdout.split()
    assert source == "cache" and Path(path) == home / ".cache/torch/hub/checkpoints" / fid.WEIGHTS_FILE


def test_the_project_is_mit_licensed_with_the_licence_text():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "fersnet-bench contributors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]   # SPDX form (PEP 639)


def test_every_phony_make_target_has_a_recipe():
    text = (ROOT / "Makefile").read_text()
    (phony,) = re.findall(r"^\.PHONY:(.*)$", text, re.M)
    for target in phony.split():
        assert re.search(rf"^{re.escape(target)}:", text, re.M), target


# Words that describe how the project was built, or the place it was built in, not how to use it.
NOT_FOR_USERS = re.compile(
    r"this project's sessions|this session|\bsessions so far|\bagents?\b|\blent\b|run\(command=|carry=\[|"
    r"/work/shared|README's main job|ecosystem\.md|the issue\b|\bissue \d|no device|the brief\b", re.I)


def user_facing_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files += sorted((ROOT / "bench").glob("*.sh")) + sorted((ROOT / "bench").glob("*.py"))
    return files + sorted((ROOT / "fersnet").rglob("*.py"))


def test_user_facing_text_speaks_to_users_not_of_how_the_project_was_built():
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in user_facing_files()
             for i, line in enumerate(p.read_text().splitlines(), 1) if NOT_FOR_USERS.search(line)]
    assert not found, "\n".join(found)


def test_demo_help_describes_the_pipeline():
    run = subprocess.run([sys.executable, "-m", "fersnet.demo", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0
    assert "whole benchmark pipeline on the synthetic stand-in" in " ".join(run.stdout.split())
    assert not NOT_FOR_USERS.search(run.stdout) and "README" not in run.stdout


def test_the_gpu_check_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_check.sh")]).returncode == 0
    assert "bash bench/gpu_check.sh" in (ROOT / "bench" / "README.md").read_text()


def _tree(root: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for d in ("data", "results", "reports") if (root / d).exists()
            for p in (root / d).rglob("*")}


@pytest.mark.slow
def test_the_gpu_check_runs_every_step_on_the_cpu_and_leaves_the_project_alone(tmp_path):
    """bench/gpu_check.sh's own check (DEVICE=cpu PROFILE=test QUICK=1, as its header says): every step
    writes its result, and the short fold trains in a project folder of its own under $OUT."""
    import json
    before = _tree(ROOT)
    out = tmp_path / "gpu"
    env = {**os.environ, "DEVICE": "cpu", "PROFILE": "test", "QUICK": "1", "OUT": str(out)}
    run = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log = (out / "log.txt").read_text()
    check = json.loads((out / "cpu_vs_gpu.json").read_text())
    assert check["device"] == "cpu" and check["mismatch"] == {} and "cpu_vs_gpu_losses OK" in log
    step = json.loads((out / "train_step_paper_h100.json").read_text())
    assert step["schema"] == "fersnet-bench/results/1" and step["machine"]["cuda"] is False
    row = step["numbers"]["results"][0]
    assert row["fast_img_per_s"] == pytest.approx(row["batch_size"] / row["fast_step_s"])
    assert "concurrent fersnet x2:" in log and all((out / f"concurrent_{i}.json").exists() for i in (1, 2))
    assert "fast_ops on/off img/s: {'fersnet'" in log
    metrics = json.loads((out / "fold_project/results/ckplus/fersnet/seed0/fold0/metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1
    assert _tree(ROOT) == before                      # the project's data, results and reports untouched


def test_the_readmes_quick_test_command_leaves_out_exactly_the_long_runs():
    import shlex
    (command,) = re.findall(r"`(\.venv/bin/python -m pytest -n 2 -m \"not slow\" tests)`", (ROOT / "README.md").read_text())
    argv = [sys.executable, *shlex.split(command.replace(" -n 2", ""))[1:]]   # collected in one process
    out = subprocess.run([*argv, "--collect-only", "-q", "-p", "no:xdist"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    quick = [line for line in out.stdout.splitlines() if "::" in line]
    for long_run in ("test_snakemake_runs_the_tiny_grid", "test_dvc_repro_runs", "test_slurm_profile_runs",
                     "test_eight_concurrent_jobs", "test_compiled_networks_train_like_eager_ones"):
        assert not any(long_run in t for t in quick), long_run
    assert any("readmes_quick_test_command" in t for t in quick) and len(quick) > 300


def test_the_readmes_paper_plan_counts_the_jobs_of_the_dry_run(tmp_path):
    """README's `snakemake -n all_folds --config profile=paper` comment states the number of training
    jobs and judges; the real dry run (in a copy of the workflow) plans exactly those."""
    line = readme_line("snakemake -n all_folds --config profile=paper")
    (stated_train, stated_judges), = re.findall(r"the plan: (\d+) training jobs \+ (\d+) judges", line)
    for name in ("workflow", "params.yaml", "fersnet"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    snakemake = Path(sys.executable).parent / "snakemake"
    run = subprocess.run([str(snakemake), "-n", "all_folds", "--config", "profile=paper"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout + run.stderr, re.M))
    planned_train = sum(int(n) for rule, n in counts.items() if rule.startswith("train_"))
    planned_judges = sum(int(n) for rule, n in counts.items() if rule.startswith("judge_"))
    assert (planned_train, planned_judges) == (int(stated_train), int(stated_judges)), counts


@needs_make
@pytest.mark.parametrize("gpu, asked, installs, says", [
    (False, None, "cuda", "the lock as pinned; no NVIDIA GPU found: rm -rf .venv && make venv TORCH=cpu installs "
                          "the CPU-only build instead"),
    (True, None, "cuda", "the lock as pinned; an NVIDIA GPU found (nvidia-smi)"),
    (False, "cpu", "cpu", "as asked"),
])
def test_make_venv_installs_the_lock_as_pinned_unless_asked_and_names_the_cpu_build_without_a_gpu(
        tmp_path, gpu, asked, installs, says):
    for name in ("Makefile", "requirements.lock", "pyproject.toml"):      # a fresh clone: no .venv yet
        shutil.copy(ROOT / name, tmp_path / name)
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("make", "sh", "cat", "grep", "python3"):
        (tools / tool).symlink_to(shutil.which(tool))
    if gpu:                                    # what an NVIDIA driver puts on PATH
        (tools / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
        (tools / "nvidia-smi").chmod(0o755)
    args = ["make", "--no-print-directory", "-n", "venv"] + ([f"TORCH={asked}"] if asked else [])
    plan = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PATH": str(tools), "HOME": str(tmp_path)}).stdout
    assert f'echo "make venv: the {installs} build of torch ({says})"' in plan
    cpu_index = "--index-url https://download.pytorch.org/whl/cpu" in plan
    assert cpu_index == (installs == "cpu") and ("-r requirements.lock" in plan) == (installs == "cuda")
    assert f"echo {installs} > .venv/.torch" in plan
