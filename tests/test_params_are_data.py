"""params.yaml is data: no key or value of it runs code, whichever entry point reads it (the CLI,
Snakemake, dry run included, and DVC). Snakemake's own `configfile:` reading would put the file
through its YAML templating, where `__use_yte__: true` makes a `?expression` value run Python; the
Snakefile reads params.yaml with fersnet's strict loader instead (workflow/rules/common.smk)."""
from __future__ import annotations

import pytest
import yaml

from test_workflow import BIN, make_project, run, snakemake


def hostile(proj, tmp_path):
    """params.yaml turned into a YAML template whose `?` expression would create a file."""
    proof = tmp_path / "code-ran"
    raw = yaml.safe_load((proj / "params.yaml").read_text())
    payload = f'?__import__("pathlib").Path({str(proof)!r}).touch() or "test"'
    hostile = {"__use_yte__": True, **raw, "profile": payload}
    (proj / "params.yaml").write_text(yaml.safe_dump(hostile, sort_keys=False, width=1000))
    assert yaml.safe_load((proj / "params.yaml").read_text())["profile"] == payload
    return proof


@pytest.mark.slow
def test_a_templated_params_file_runs_no_code_through_any_entry_point(tmp_path):
    proj = make_project(tmp_path, **{"mlflow.enabled": False})
    proof = hostile(proj, tmp_path)
    attempts = {
        "fersnet": [str(BIN / "fersnet"), "synth", "--params", "params.yaml", "--db", "ckplus"],
        "snakemake -n": [str(BIN / "snakemake"), "-n"],
        "snakemake": [str(BIN / "snakemake"), "--cores", "1", "data/synthetic/ckplus"],
        "snakemake --config": [str(BIN / "snakemake"), "-n", "--config", "profile=test"],
        "dvc repro": [str(BIN / "dvc"), "repro"],
    }
    for name, cmd in attempts.items():
        out = run(cmd, proj, timeout=300)
        said = out.stdout + out.stderr
        assert out.returncode != 0, (name, said[-3000:])
        assert "unknown key `__use_yte__`" in said, (name, said[-3000:])
        assert "Traceback" not in said, (name, said[-3000:])
        assert not proof.exists(), f"{name} ran the code in params.yaml"
    assert not (proj / "data").exists() and not (proj / "results").exists()


def test_snakemake_reads_params_and_command_line_config_as_before(tmp_path):
    proj = make_project(tmp_path)
    out = snakemake(proj, "all_folds", "-n", "--config", "profile=paper", "run_seeds=[0,1]")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "results/ckplus/fersnet/seed1/fold9/metrics.json" in out.stdout     # paper: 10 folds, seeds 0 and 1
    out = snakemake(proj, "all_folds", "-n")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "fold2" not in out.stdout and "results/ckplus/fersnet/seed0/fold1/metrics.json" in out.stdout
