"""The catalogue (fersnet/catalog.py) is the one list of models and databases: a model registered
there, and nowhere else, reaches params validation, the CLI, the workflow's targets and the report."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fersnet import catalog, config, names
from fersnet.cli import build_parser
from fersnet.reports import contents, report
from test_report import CORRECT, small_cfg, write_grid
from test_workflow import BIN, job_counts, make_project

ROOT = Path(__file__).resolve().parents[1]
NEW = catalog.ModelSpec("tiny_cnn", "Tiny CNN baseline", "fersnet.models.registry:stargan_task",
                        classifies=True, synthesizes=True,
                        sections={"tiny_cnn": {"lr": config.Float(0.0, 1.0, lo_open=True)}},
                        reads=("tiny_cnn",), defaults={"tiny_cnn": {"lr": 0.01}})
REGISTER = ("from fersnet import catalog, config\n"
            "catalog.register_model(catalog.ModelSpec('tiny_cnn', 'Tiny CNN baseline', "
            "'fersnet.models.registry:stargan_task', synthesizes=True))\n")


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(catalog.MODELS, NEW.key, NEW)
    return NEW


def test_an_unregistered_model_is_refused_by_params_naming_the_known_ones():
    with pytest.raises(config.ConfigError, match=r"`models\[1\]` is 'tiny_cnn'; allowed: one of .*stargan"):
        config.load(ROOT / "params.yaml", "test", {"models": ["fersnet", "tiny_cnn"]})


def test_a_registered_model_is_validated_with_its_own_section_and_its_defaults(registered):
    cfg = config.load(ROOT / "params.yaml", "test", {"models": ["fersnet", "tiny_cnn"]})
    assert cfg["models"] == ["fersnet", "tiny_cnn"] and cfg["tiny_cnn"] == {"lr": 0.01}
    with pytest.raises(config.ConfigError, match=r"`tiny_cnn.lr` is 2(\.0)?; allowed: a number > 0.0 and <= 1.0"):
        config.load(ROOT / "params.yaml", "test", {"tiny_cnn": {"lr": 2}})
    from fersnet import provenance
    assert provenance.job_params(cfg, "train", "tiny_cnn")["tiny_cnn"] == {"lr": 0.01}
    assert "tiny_cnn" not in provenance.job_params(cfg, "train", "fersnet")


def _choices(verb: str) -> list[str]:
    sub = next(a for a in build_parser()._subparsers._group_actions if a.dest == "verb").choices[verb]
    return list(next(a for a in sub._actions if a.dest == "model").choices)


def test_a_registered_model_is_a_cli_choice_of_train_and_if_it_synthesizes_of_score(registered):
    assert "tiny_cnn" in _choices("train") and "tiny_cnn" in _choices("score")
    assert catalog.generators()[0] == catalog.REFERENCE


def test_a_registered_model_gets_its_rows_in_the_reports_tables(registered, tmp_path, monkeypatch):
    monkeypatch.setitem(CORRECT, "tiny_cnn", [30, 31])
    cfg = small_cfg(tmp_path, ("ckplus",))
    cfg["models"], cfg["n_folds"] = ["fersnet", "no_mtl", "tiny_cnn"], 2
    write_grid(cfg, ("ckplus",))
    summary = report.build_report(cfg)
    assert contents.fer_models(cfg)[-1] == "tiny_cnn" and contents.gen_models(cfg)[-1] == "tiny_cnn"
    entry = summary["measured"]["ckplus"]["tiny_cnn"]
    assert entry["accuracy_mean"] == pytest.approx(100 * 30.5 / 40)
    fersnet_mean = summary["measured"]["ckplus"]["fersnet"]["accuracy_mean"]
    assert entry["n_pairs_vs_fersnet"] == 2 and "p_wilcoxon_vs_fersnet" in entry      # paired against FERSNet
    assert entry["mean_diff_vs_fersnet"] == pytest.approx(entry["accuracy_mean"] - fersnet_mean)
    tex_dir = Path(cfg["paths"]["reports"])
    fer = next(tex_dir.rglob("fer_accuracy.tex")).read_text()
    synthesis = next(tex_dir.rglob("synthesis_ckplus.tex")).read_text()
    assert names.MODEL["tiny_cnn"] in fer and names.GENERATOR["tiny_cnn"] in synthesis


def test_a_model_registered_before_snakemake_starts_gets_its_training_and_scoring_jobs(tmp_path):
    proj = make_project(tmp_path)
    args = ["-n", "all", "--config", "models=[fersnet,tiny_cnn]"]
    code = REGISTER + "import sys\nfrom snakemake.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=proj, capture_output=True, text=True,
                         timeout=300, env={"PATH": f"{BIN}:/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    counts = job_counts(out.stdout + out.stderr)
    assert counts["train"] == 4 and counts["score"] == 4          # 2 models x 2 folds, both generators
    assert "results/ckplus/tiny_cnn/seed0/fold1/metrics.json" in out.stdout + out.stderr
    plain = subprocess.run([str(BIN / "snakemake"), *args], cwd=proj, capture_output=True, text=True, timeout=300)
    assert plain.returncode != 0 and "`models[1]` is 'tiny_cnn'" in plain.stdout + plain.stderr
