"""Fingerprints: a finished result is reused only for the inputs that made it (fersnet.provenance).

Through the real CLI (`fersnet.cli.main`) on a fixture database at the test profile.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from conftest import write_processed
from fersnet import config, ownership, paths, provenance
from fersnet.cli import main


@pytest.fixture
def project(test_cfg, tmp_path):
    """A params file (the resolved test profile, outputs under tmp_path) and a fixture database."""
    cfg = copy.deepcopy(test_cfg)
    cfg["train"].update(crop=16, batch_size=32, epochs=1)
    cfg["judge"]["epochs"] = 1
    write_processed(Path(cfg["preprocess"]["out"]) / "ckplus", n_subjects=10, size=24)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(config.params_view(cfg)))
    return cfg, params


def cli(params, *argv):
    return main([argv[0], "--params", str(params), *argv[1:]])


def test_same_inputs_reuse_other_inputs_refused_naming_the_key_then_force_recomputes(project, capsys):
    cfg, params = project
    job = ("train", "--db", "ckplus", "--model", "no_mtl", "--fold", "0")
    run = paths.run_dir(cfg, "ckplus", "no_mtl", 0)
    assert cli(params, *job) == 0
    first = json.loads((run / paths.METRICS).read_text())
    assert first["fingerprint"] and first["code_version"]
    capsys.readouterr()

    assert cli(params, *job) == 0                                  # same inputs: reused
    assert "reusing" in capsys.readouterr().err
    assert json.loads((run / paths.METRICS).read_text()) == first

    assert cli(params, *job, "--set", "train.lr=0.5") == 2         # other inputs: refused
    err = capsys.readouterr().err
    assert "train.lr: 0.002 -> 0.5" in err and "--force" in err and "Traceback" not in err
    assert json.loads((run / paths.METRICS).read_text()) == first  # untouched

    assert cli(params, *job, "--set", "train.lr=0.5", "--force") == 0
    forced = json.loads((run / paths.METRICS).read_text())
    assert forced["fingerprint"] != first["fingerprint"]
    prov = json.loads((run / provenance.PROVENANCE).read_text())
    assert prov["fingerprint"] == forced["fingerprint"] and prov["params"]["train.lr"] == 0.5
    assert not [p.name for p in run.parent.iterdir()
                if p.name.startswith(".") and p.name != ownership.MARKER]     # staging swapped in
    capsys.readouterr()
    assert cli(params, *job, "--set", "train.lr=0.5") == 0 and "reusing" in capsys.readouterr().err


def test_runtime_only_keys_do_not_change_the_fingerprint(project, capsys):
    cfg, params = project
    job = ("judge", "--db", "ckplus", "--fold", "1")
    assert cli(params, *job) == 0
    capsys.readouterr()
    assert cli(params, *job, "--set", "train.threads=2", "--set", "train.checkpoint_every=5") == 0
    assert "reusing" in capsys.readouterr().err
    assert cli(params, *job, "--set", "judge.epochs=2") == 2
    assert "judge.epochs: 1 -> 2" in capsys.readouterr().err


def test_changed_data_is_refused_and_a_stale_processed_folder_is_named(project, capsys):
    cfg, params = project
    job = ("judge", "--db", "ckplus", "--fold", "0")
    assert cli(params, *job) == 0
    folder = Path(cfg["preprocess"]["out"]) / "ckplus"
    write_processed(folder, n_subjects=10, size=24, seed=1)        # same shape, other faces
    capsys.readouterr()
    assert cli(params, *job) == 2
    assert "processed data of ckplus changed" in capsys.readouterr().err

    # processed data made with other data settings than params now give: named, not used
    summary = json.loads((folder / paths.PREP_SUMMARY).read_text())
    summary["protocol"] = {"frames": 3, "include_neutral": False, "root": cfg["data"]["ckplus"]["root"]}
    (folder / paths.PREP_SUMMARY).write_text(json.dumps(summary))
    assert cli(params, *job, "--set", "data.ckplus.frames=1", "--force") == 2
    err = capsys.readouterr().err
    assert "data.ckplus.frames: 3 -> 1" in err and "fersnet preprocess --db ckplus" in err


def test_score_is_tied_to_the_checkpoints_it_read(project, capsys):
    cfg, params = project
    for job in (("train", "--db", "ckplus", "--model", "no_mtl", "--fold", "2"),
                ("judge", "--db", "ckplus", "--fold", "2"),
                ("score", "--db", "ckplus", "--model", "no_mtl", "--fold", "2")):
        assert cli(params, *job) == 0
    scores_file = paths.synthesis_dir(cfg, "ckplus", "no_mtl", 2) / paths.SCORES
    prov = json.loads((scores_file.parent / provenance.PROVENANCE).read_text())
    ckpt = str(paths.run_dir(cfg, "ckplus", "no_mtl", 2) / paths.CHECKPOINT)
    assert ckpt in prov["inputs"] and prov["data"]["ckplus"]
    assert prov["code"]["source_hash"] and "torch" in prov["environment"]
    assert prov["environment"]["device"] == "cpu" and prov["environment"]["cpu_capability"]

    judge_ckpt = str(paths.judge_dir(cfg, "ckplus", 2) / paths.CHECKPOINT)
    assert cli(params, "judge", "--db", "ckplus", "--fold", "2", "--set", "judge.epochs=2", "--force") == 0
    capsys.readouterr()
    assert cli(params, "score", "--db", "ckplus", "--model", "no_mtl", "--fold", "2",
               "--set", "judge.epochs=2") == 2                           # scored with the old judge
    assert f"input {judge_ckpt} changed" in capsys.readouterr().err

    # a generator trained again (--force) replaces the whole run folder: its old scores go with it
    assert cli(params, "train", "--db", "ckplus", "--model", "no_mtl", "--fold", "2",
               "--set", "train.lambda_l1=2.0", "--force") == 0
    assert not scores_file.exists()


def test_differences_name_params_data_and_inputs():
    old = {"params": {"train.lr": 0.002, "seed": 0}, "data": {"ckplus": "a"}, "inputs": {"x.pt": "1"}}
    new = {"params": {"train.lr": 0.5, "seed": 0}, "data": {"ckplus": "b"}, "inputs": {"x.pt": "2"}}
    assert provenance.differences(old, new) == ["train.lr: 0.002 -> 0.5", "processed data of ckplus changed",
                                                "input x.pt changed"]


def test_code_version_names_the_commit_and_whether_the_tree_was_dirty():
    code = provenance.code_version()
    assert code["source_hash"] and code["version"]
    if code["git_commit"]:
        assert len(code["git_commit"]) == 40 and isinstance(code["dirty"], bool)
        assert provenance.code_label(code).startswith(code["git_commit"][:7])


def test_another_seed_is_another_result_beside_the_first_and_a_negative_seed_is_refused(project, capsys):
    cfg, params = project
    job = ("train", "--db", "ckplus", "--model", "no_mtl", "--fold", "0")
    assert cli(params, *job) == 0                                  # seeds[0] = 0
    assert cli(params, *job, "--seed", "1") == 0
    zero, one = (paths.run_dir(cfg, "ckplus", "no_mtl", 0, seed=s) for s in (0, 1))
    assert zero.parent.name == "seed0" and one.parent.name == "seed1"
    assert json.loads((one / paths.CONFIG).read_text())["seed"] == 1
    a, b = (json.loads((d / paths.METRICS).read_text()) for d in (zero, one))
    assert a["fingerprint"] != b["fingerprint"]
    assert (zero / paths.HISTORY).read_text() != (one / paths.HISTORY).read_text()
    prov = json.loads((one / provenance.PROVENANCE).read_text())
    assert prov["params"]["seed"] == 1
    capsys.readouterr()
    assert cli(params, *job, "--seed", "-1") == 2
    assert "--seed -1" in capsys.readouterr().err
