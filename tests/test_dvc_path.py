"""DVC's stages run Snakemake through workflow/snakemake.sh: without the venv on PATH they use the
project's .venv, and without a .venv they stop with one line naming the fix (a real `dvc repro`)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from test_workflow import BIN, ROOT, make_project

SYSTEM_PATH = "/usr/bin:/bin"          # no snakemake, dvc or fersnet on it


def repro(proj: Path, stage: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=SYSTEM_PATH, PYTHONPATH=str(proj), DVC_NO_ANALYTICS="1", OMP_NUM_THREADS="1")
    return subprocess.run([str(BIN / "dvc"), "repro", "--single-item", stage], cwd=proj, env=env,
                          capture_output=True, text=True, timeout=600)


def test_every_dvc_stage_runs_snakemake_through_the_wrapper():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    cmds = [stage.get("cmd") or stage["do"]["cmd"] for stage in stages.values()]
    assert cmds and all(cmd.startswith("sh workflow/snakemake.sh --cores all ") for cmd in cmds), cmds


@pytest.mark.slow
@pytest.mark.skipif(any((Path(d) / "snakemake").exists() for d in SYSTEM_PATH.split(":")),
                    reason="a system-wide snakemake is on the plain PATH")
def test_dvc_without_the_venv_on_path_uses_the_projects_venv_or_names_the_fix(tmp_path):
    proj = make_project(tmp_path, **{"mlflow.enabled": False})
    stopped = repro(proj, "synth@ckplus")
    assert stopped.returncode != 0
    said = stopped.stdout + stopped.stderr
    assert "snakemake is not on PATH" in said and "source .venv/bin/activate" in said, said[-3000:]
    assert "make demo" in said and not (proj / "data/synthetic/ckplus").exists()
    (proj / ".venv").symlink_to(BIN.parent)
    ran = repro(proj, "synth@ckplus")
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    assert any((proj / "data/synthetic/ckplus").iterdir())


def test_the_wrapper_runs_the_snakemake_on_path_where_there_is_one(tmp_path):
    import snakemake
    done = subprocess.run(["sh", str(ROOT / "workflow/snakemake.sh"), "--version"], cwd=tmp_path,  # no .venv
                          env=dict(os.environ, PATH=f"{BIN}:{SYSTEM_PATH}"), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == snakemake.__version__, done.stderr[-2000:]
