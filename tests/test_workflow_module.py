"""fersnet/workflow.py: the decisions the Snakemake rules take, without Snakemake."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from fersnet import config, paths, workflow

ROOT = Path(__file__).resolve().parents[1]


def cfg(profile="test"):
    return config.load(ROOT / "params.yaml", profile)


def test_fold_groups_cover_every_fold_once_in_groups_of_folds_per_job():
    c = cfg()
    c["orchestration"]["folds_per_job"] = 3
    groups = workflow.fold_groups(c)
    assert groups == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert [workflow.group_tag(g) for g in groups[-2:]] == ["folds6_8", "fold9"]
    c["orchestration"]["folds_per_job"] = 1
    assert len(workflow.fold_groups(c)) == 10


def test_snapshot_is_a_loadable_params_file_named_by_content(tmp_path):
    c = cfg()
    path = workflow.snapshot(c, tmp_path)
    assert config.load(path) == c
    assert workflow.snapshot(copy.deepcopy(c), tmp_path) == path            # same content, same file
    c2 = copy.deepcopy(c)
    c2["train"]["lr"] = 0.5
    other = workflow.snapshot(c2, tmp_path)
    assert other != path and config.load(path)["train"]["lr"] != 0.5        # the first is unchanged


def test_rule_params_follow_the_fingerprint_and_leave_runtime_keys_out():
    c = cfg()
    base = workflow.rule_params(c, "train", "fersnet")
    c2 = copy.deepcopy(c)
    c2["train"]["threads"] = 8
    c2["train"]["device"] = "cpu"
    c2["mlflow"]["enabled"] = False
    assert workflow.rule_params(c2, "train", "fersnet") == base
    c2["train"]["lambda_l1"] = 3.0
    assert workflow.rule_params(c2, "train", "fersnet") != base
    assert workflow.rule_params(c2, "judge") == workflow.rule_params(c, "judge")     # judge reads no lambda
    c2["stargan"]["n_critic"] = 1
    assert workflow.rule_params(c2, "train", "fersnet") == workflow.rule_params(
        dict(c2, stargan=c["stargan"]), "train", "fersnet")
    assert json.loads(workflow.rule_params(c2, "train", "stargan"))["stargan"]["n_critic"] == 1


def test_fes_da_and_its_control_read_the_fes_da_settings_and_need_the_fold_fersnet():
    c = cfg()
    for model in ("fes_da", "fes_da_real"):
        assert workflow.train_needs(model) == ["fersnet"]
        assert json.loads(workflow.rule_params(c, "train", model))["fes_da"] == c["fes_da"]
    assert workflow.train_needs("fersnet") == [] and "fes_da" not in json.loads(workflow.rule_params(c, "train", "fersnet"))
    c2 = copy.deepcopy(c)
    c2["fes_da"]["epochs"] = 7            # the control re-runs with FES-DA's epochs
    assert workflow.rule_params(c2, "train", "fes_da_real") != workflow.rule_params(c, "train", "fes_da_real")


def test_params_changed_message_only_when_the_file_changed(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"a": 1}))
    digest = workflow.file_digest(params)
    assert workflow.params_changed_message(params, digest, "snap.yaml") is None
    params.write_text(yaml.safe_dump({"a": 2}))
    msg = workflow.params_changed_message(params, digest, "snap.yaml")
    assert "edited while this run" in msg and "snap.yaml" in msg


def test_manifest_lists_content_hashes(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    workflow.write_manifest([tmp_path / "a.json"], tmp_path / "m" / "x.manifest")
    line = (tmp_path / "m" / "x.manifest").read_text().split()
    assert line[0] == "bf21a9e8fbc5a3846fb05b4fa0859e0917b2202f" and line[1] == "2"


def test_the_manifest_rules_log_ends_saying_how_it_ended(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    log = tmp_path / "logs" / "folds.log"
    workflow.write_manifest([tmp_path / "a.json"], tmp_path / "m" / "x.manifest", log)
    assert log.read_text().splitlines()[-1].startswith("fersnet job: exit code 0 after ")
    with pytest.raises(FileNotFoundError):
        workflow.write_manifest([tmp_path / "missing.json"], tmp_path / "m" / "y.manifest", log)
    assert log.read_text().splitlines()[-1].startswith("fersnet job: failed (FileNotFoundError")
    assert not (tmp_path / "m" / "y.manifest").exists()


def test_command_line_config_is_read_as_yaml_like_params():
    given = workflow.command_line_config(["run_seeds=[0,1,2]", "profile=test", "train={epochs: 2}", "x="])
    assert given == {"run_seeds": [0, 1, 2], "profile": "test", "train": {"epochs": 2}, "x": None}
    cfg = config.resolve(config.deep_merge(config.read_yaml((ROOT / "params.yaml").read_text(), "params.yaml"),
                                           workflow.command_line_config(["run_seeds=[3,1]"])))
    assert cfg["run_seeds"] == [3, 1] and cfg["seed"] == 3


def test_the_demos_closing_message_names_a_pdf_that_was_not_built_and_prints_the_headline(test_cfg, tmp_path):
    """Without pdflatex the report has no PDF: the closing message says so and how to build it; the
    headline numbers (reports/headline.json) are printed as a table."""
    import json

    from fersnet import demo
    reports = tmp_path / "reports"
    reports.mkdir()
    test_cfg["paths"]["reports"] = str(reports)
    (reports / "summary.json").write_text(json.dumps({"pdf": "skipped: pdflatex not installed"}))
    (reports / "headline.json").write_text(json.dumps({
        "ckplus": {"fersnet": {"accuracy": 72.91, "judged_synthesis": 37.8}, "stargan": {"judged_synthesis": 17.0}},
        "oulu": {"fersnet": {"accuracy": 76.9, "judged_synthesis": 33.6}}}))
    message = demo.where_outputs_are(test_cfg)
    assert "report.pdf was NOT built (skipped: pdflatex not installed)" in message
    assert "install LaTeX" in message and "run the same command again" in message
    table = demo.headline_table(test_cfg)
    fersnet_line = next(line for line in table.splitlines() if line.strip().startswith("FERSNet "))
    assert "72.9 / 37.8" in fersnet_line and "76.9 / 33.6" in fersnet_line
    assert "- / 17.0" in next(line for line in table.splitlines() if "StarGAN" in line)
    (reports / "summary.json").write_text(json.dumps({"pdf": "compiled"}))
    (reports / "report.pdf").write_bytes(b"%PDF-1.5")
    assert "NOT built" not in demo.where_outputs_are(test_cfg)


def test_the_workflow_bookkeeping_is_one_folder_whose_paths_only_fersnet_paths_builds(tmp_path):
    c = {"paths": {"results": str(tmp_path / "res")}, "seed": 2}
    folder = paths.workflow_dir(c)
    made = [paths.mlflow_init_record(c), paths.parent_record(c, "ckplus", "fersnet"),
            paths.tracking_failure(c, "ckplus", "fersnet", 3), paths.tracking_failure(c, "ckplus", "fersnet"),
            paths.stage_manifest(c, "folds"), paths.stage_manifest(c, "scores")]
    assert folder == tmp_path / "res" / "_workflow" and all(folder in p.parents for p in made)
    assert len(set(made)) == len(made)
    assert paths.tracking_failure(c, "ckplus", "fersnet", 3).name == "ckplus_fersnet_seed2_fold3.json"
    assert paths.tracking_failure(c, "ckplus", "fersnet", 3, seed=0).name == "ckplus_fersnet_seed0_fold3.json"
    import re
    code = [*ROOT.glob("fersnet/**/*.py"), *ROOT.glob("workflow/rules/*.smk"), ROOT / "workflow" / "Snakefile"]
    spelled = [f.relative_to(ROOT) for f in code
               if f.name != "paths.py" and re.search(r"""["'/]_workflow\b|mlflow_init\.json|tracking_failed""", f.read_text())]
    assert spelled == []


def test_a_lost_init_record_is_restored_only_when_results_wait_for_it_and_never_in_a_dry_run(tmp_path):
    c = {"paths": {"results": str(tmp_path / "res")}}
    result = tmp_path / "res" / "metrics.json"
    command = ["fersnet", "track", "--init"]
    assert workflow.restore_init_record(c, [result], command, tmp_path / "init.log", dry=False) is None  # first run
    result.parent.mkdir(parents=True)
    result.write_text("{}")
    said = workflow.restore_init_record(c, [result], command, tmp_path / "init.log", dry=True)
    assert said.startswith(f"fersnet: {paths.mlflow_init_record(c)} is missing; a real run re-creates it first")
    assert not paths.mlflow_init_record(c).exists() and not (tmp_path / "init.log").exists()
