"""A database defined in params.yaml alone (fersnet.data.generic, docs/datasets/generic.md): built in
the test from the Oulu-CASIA stand-in's faces, re-filed as root/<subject>/<expression>/<images> or
listed in a CSV manifest, it goes through the real CLI and the real Snakemake like a built-in one."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from fersnet import catalog, cli, config, names
from fersnet.data import generic
from test_workflow import BIN, job_counts, make_project, run, snakemake

CLASSES = ["anger", "disgust", "fear", "happy", "sadness", "surprise"]
OULU_NAMES = {"Anger": "anger", "Disgust": "disgust", "Fear": "fear", "Happiness": "happy",
              "Sadness": "sadness", "Surprise": "surprise"}


@pytest.fixture(autouse=True)
def own_catalogue(monkeypatch):
    """What a test registers stays in the test."""
    monkeypatch.setattr(catalog, "DATABASES", dict(catalog.DATABASES))


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    """The Oulu-CASIA stand-in at the test profile (its faces are found by the detector):
    OriginalImg/VL/Strong/P<id>/<Expression>/NNN.jpeg."""
    folder = tmp_path_factory.mktemp("standin")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["synth"]["out"] = str(folder / "synthetic")
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    out = run([str(BIN / "fersnet"), "synth", "--params", "params.yaml", "--profile", "test", "--db", "oulu"], folder)
    assert out.returncode == 0, out.stderr[-2000:]
    return folder / "synthetic" / "oulu" / "OriginalImg" / "VL" / "Strong"


def as_folders(standin: Path, root: Path) -> Path:
    """The stand-in re-filed as root/<subject>/<expression>/<images>, as PNG (from its JPEGs)."""
    import cv2
    for subject in sorted(p for p in standin.iterdir() if p.is_dir()):
        for expr in (p for p in subject.iterdir() if p.is_dir()):
            folder = root / subject.name / OULU_NAMES[expr.name]
            folder.mkdir(parents=True)
            for img in sorted(expr.glob("*.jpeg")):
                cv2.imwrite(str(folder / f"{img.stem}.png"), cv2.imread(str(img)))
    return root


def as_manifest(standin: Path, root: Path) -> Path:
    """The stand-in's files copied under root/images/ and listed in root/list.csv with sequence and frame."""
    (root / "images").mkdir(parents=True)
    with open(root / "list.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "subject", "expression", "sequence", "frame"])
        for subject in sorted(p for p in standin.iterdir() if p.is_dir()):
            for expr in sorted(p for p in subject.iterdir() if p.is_dir()):
                for img in sorted(expr.glob("*.jpeg")):
                    rel = Path("images") / f"{subject.name}_{expr.name}_{img.name}"
                    shutil.copy(img, root / rel)
                    w.writerow([rel.as_posix(), subject.name, OULU_NAMES[expr.name], expr.name, int(img.stem)])
    return root


def params(folder: Path, section: dict, **top) -> Path:
    """A params file of the test profile, 2 folds, whose `databases` is the generic `mydb`."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw.update(databases=["mydb"], **top)
    raw["profiles"]["test"]["n_folds"] = 2
    raw["preprocess"]["out"] = str(folder / "processed")
    raw["synth"]["out"] = str(folder / "synthetic")
    raw["data"]["mydb"] = section
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder / "params.yaml"


def fersnet(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    got = capsys.readouterr()
    return code, got.out, got.err


def test_a_folder_layout_database_in_params_runs_preprocess_train_and_report_through_snakemake(tmp_path, standin):
    proj = make_project(tmp_path, models=["no_mtl"])
    as_folders(standin, proj / "MyDB")
    raw = yaml.safe_load((proj / "params.yaml").read_text())
    raw["databases"] = ["mydb"]
    raw["data"]["mydb"] = {"layout": "folders", "root": "MyDB", "classes": CLASSES, "frames": 2, "name": "My DB"}
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    dry = snakemake(proj, "-n", "all")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert job_counts(dry.stdout)["train"] == 2 and "synth" not in job_counts(dry.stdout)
    assert "results/mydb/no_mtl/seed0/fold1/metrics.json" in dry.stdout
    rules = snakemake(proj, "--list-rules").stdout.split()   # a database key may be none of the workflow's
    assert "mydb" in rules and all(r in (*catalog.database_keys(), "mydb", *generic.WORKFLOW_RULES)
                                   or r.startswith(generic.WORKFLOW_RULE_PREFIXES) for r in rules), rules
    per_db = snakemake(proj, "-n", "mydb")                 # the catalogue's per-database target
    assert per_db.returncode == 0 and job_counts(per_db.stdout)["preprocess"] == 1, per_db.stderr[-2000:]

    out = snakemake(proj, "--cores", "2", "all", timeout=1500)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    summary = json.loads((proj / "data/processed/mydb/summary.json").read_text())
    assert summary["classes"] == CLASSES and summary["n_subjects"] == 10
    assert summary["n_images"] == 10 * 6 * 2 and summary["n_sequences"] == 60      # the last 2 of 5 frames
    subjects = sorted(summary["subjects_per_fold"]["0"] + summary["subjects_per_fold"]["1"])
    assert summary["subjects_per_fold"]["0"] == subjects[0::2]                    # ascending IDs, k mod 2
    assert summary["faces"].get("detector", 0) > summary["faces"].get("center", 0)
    for k in (0, 1):
        assert json.loads((proj / f"results/mydb/no_mtl/seed0/fold{k}/metrics.json").read_text())["accuracy"] >= 0
    report = json.loads((proj / "reports/summary.json").read_text())
    assert "mydb" in json.dumps(report["measured"])
    tables = "".join(p.read_text() for p in (proj / "reports").rglob("*.tex"))
    assert "My DB" in tables
    again = snakemake(proj, "-n", "all")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_a_manifest_database_is_read_with_the_last_frames_of_each_sequence_and_offered_to_the_cli(
        tmp_path, standin, capsys):
    root = as_manifest(standin, tmp_path / "listed")
    p = params(tmp_path, {"layout": "manifest", "root": str(root), "manifest": "list.csv", "classes": CLASSES,
                          "frames": 3, "counts": [60, 10]})
    cfg = config.load(p, "test")
    assert "mydb" in cfg["databases"] and names.DATABASE["mydb"] == "mydb"
    code, out, err = fersnet(["preprocess", "--params", str(p), "--profile", "test", "--db", "mydb"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "processed/mydb/summary.json").read_text())
    assert (summary["n_images"], summary["n_sequences"], summary["n_subjects"]) == (180, 60, 10)
    assert summary["count_warning"] is None and summary["expected_counts"] == {"sequences": 60, "subjects": 10}
    import pandas as pd
    meta = pd.read_csv(tmp_path / "processed/mydb/meta.csv")
    assert sorted(meta.frame.unique()) == [2, 3, 4]                        # the last 3 of frames 0-4
    assert "mydb" in subprocess.run([str(BIN / "fersnet"), "train", "--help", "--params", str(p)],
                                    capture_output=True, text=True).stdout


def test_every_row_of_a_manifest_without_sequences_is_one_sample(tmp_path, standin, capsys):
    root = as_manifest(standin, tmp_path / "listed")
    import cv2
    import numpy as np
    rows = list(csv.reader(open(root / "list.csv")))
    # one image as 16-bit gray at twice the size: converted like the other readers' input
    face = cv2.cvtColor(cv2.imread(str(root / rows[-1][0])), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(root / "images/gray16.png"), cv2.resize(face, None, fx=2, fy=2).astype(np.uint16) * 257)
    with open(root / "stills.csv", "w", newline="") as f:
        csv.writer(f).writerows([r[:3] for r in rows] + [["images/gray16.png", "P999", "happy"]])
    p = params(tmp_path, {"layout": "manifest", "root": str(root), "manifest": "stills.csv", "classes": CLASSES})
    code, _, err = fersnet(["preprocess", "--params", str(p), "--profile", "test", "--db", "mydb"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "processed/mydb/summary.json").read_text())
    assert summary["n_images"] == summary["n_sequences"] == len(rows)
    import pandas as pd
    meta = pd.read_csv(tmp_path / "processed/mydb/meta.csv")
    assert meta.source.iloc[-1] == "images/gray16.png" and meta.subject.iloc[-1] == "P999"
    assert np.load(tmp_path / "processed/mydb/images.npy")[-1].std() > 0
    assert "no counts to compare with" in (tmp_path / "processed/mydb/report.md").read_text()


@pytest.mark.parametrize("section, message", [
    ({"layout": "folders", "classes": CLASSES}, "params: missing key(s) `data.mydb.root`"),
    ({"layout": "tree", "root": "x", "classes": CLASSES}, "`data.mydb.layout` is 'tree'; allowed: one of folders, manifest"),
    ({"layout": "folders", "root": "x", "classes": ["happy"]}, "`data.mydb.classes` is ['happy']; allowed: a list of at least two"),
    ({"layout": "manifest", "root": "x", "classes": CLASSES}, "`data.mydb.manifest` is missing; layout `manifest` needs"),
    ({"layout": "folders", "root": "x", "classes": CLASSES, "color": 1}, "unknown key `data.mydb.color`"),
    ({"layout": "folders", "root": "x", "classes": CLASSES, "manifest": "a.csv"},
     "`data.mydb.manifest` is set but `data.mydb.layout` is `folders`"),
])
def test_a_bad_definition_is_one_line_naming_the_key(tmp_path, section, message, capsys):
    p = params(tmp_path, section)
    with pytest.raises(config.ConfigError) as e:
        config.load(p, "test")
    assert message in str(e.value) and "\n" not in str(e.value)
    code, _, err = fersnet(["preprocess", "--params", str(p), "--profile", "test", "--db", "mydb"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_params_without_the_section_resolve_in_the_same_process_after_params_with_it(tmp_path):
    config.load(params(tmp_path, {"layout": "folders", "root": "x", "classes": CLASSES}), "test")
    assert "mydb" in catalog.database_keys()
    plain = config.load(ROOT / "params.yaml", "test")
    assert "mydb" not in catalog.database_keys() and "mydb" not in plain["data"]


def test_a_database_key_that_names_a_workflow_step_is_refused(tmp_path):
    raw = yaml.safe_load(params(tmp_path, {"layout": "folders", "root": "x", "classes": CLASSES}).read_text())
    raw["data"]["report"] = raw["data"].pop("mydb")
    raw["databases"] = ["report"]
    with pytest.raises(config.ConfigError, match=r"`data.report`: 'report' is the name of a workflow step"):
        config.resolve(raw, "test")


def test_bad_data_is_one_line_naming_the_file(tmp_path, standin, capsys):
    p = params(tmp_path, {"layout": "folders", "root": str(tmp_path / "absent"), "classes": CLASSES})
    code, _, err = fersnet(["preprocess", "--params", str(p), "--profile", "test", "--db", "mydb"], capsys)
    assert code == 2 and "absent: database root not found (params data.mydb.root" in err

    root = as_folders(standin, tmp_path / "MyDB")
    (root / "P001" / "happy").rename(root / "P001" / "joy")
    p = params(tmp_path, {"layout": "folders", "root": str(root), "classes": CLASSES})
    code, _, err = fersnet(["synth", "--params", str(p), "--profile", "test", "--db", "mydb"], capsys)
    assert code == 2 and "has no synthetic stand-in" in err and not (tmp_path / "synthetic" / "mydb").exists()
    code, _, err = fersnet(["preprocess", "--params", str(p), "--profile", "test", "--db", "mydb"], capsys)
    assert code == 2 and f"{root / 'P001' / 'joy'}: unknown expression folder 'joy'; params data.mydb.classes" in err

    listed = as_manifest(standin, tmp_path / "listed")
    rows = list(csv.reader(open(listed / "list.csv")))
    with open(listed / "bad.csv", "w", newline="") as f:
        csv.writer(f).writerows([r[0], r[2]] for r in rows)
    p = params(tmp_path, {"layout": "manifest", "root": str(listed), "manifest": "bad.csv", "classes": CLASSES})
    code, _, err = fersnet(["preprocess", "--params", str(p), "--profile", "test", "--db", "mydb"], capsys)
    assert code == 2 and f"{listed / 'bad.csv'}: manifest lacks column(s) subject" in err
    assert len(err.strip().splitlines()) == 1

    with open(listed / "outside.csv", "w", newline="") as f:
        csv.writer(f).writerows([rows[0], [str(listed / rows[1][0])] + rows[1][1:]])
    p = params(tmp_path, {"layout": "manifest", "root": str(listed), "manifest": "outside.csv", "classes": CLASSES})
    code, _, err = fersnet(["preprocess", "--params", str(p), "--profile", "test", "--db", "mydb"], capsys)
    assert code == 2 and "outside.csv line 2: path" in err and "must be relative to the root" in err

    p = params(tmp_path, {"layout": "manifest", "root": str(listed), "manifest": "stills.csv", "classes": CLASSES,
                          "frames": 2})
    code, _, err = fersnet(["preprocess", "--params", str(p), "--profile", "test", "--db", "mydb"], capsys)
    assert code == 2 and "stills.csv: manifest not found (params data.mydb.manifest" in err


def test_the_papers_reported_rows_have_a_dash_in_the_column_of_a_database_defined_in_params(tmp_path):
    from fersnet.reports import aggregate, tables
    p = params(tmp_path, {"layout": "folders", "root": str(tmp_path), "classes": CLASSES, "name": "My DB"},
               models=["fersnet"])
    cfg = config.load(p, "test", {"databases": ["ckplus", "mydb"], "paths": {"results": str(tmp_path / "results"),
                                                                            "reports": str(tmp_path / "reports")}})
    tex = tables.fer_accuracy(cfg, aggregate.collect(cfg)).splitlines()
    assert any(line.startswith(" &  & Pre-train & Setting & CK+ & My DB") for line in tex)
    reported = [line for line in tex if line.startswith("Reported")]
    assert reported and all(line.rstrip(" \\").endswith("& ---") for line in reported)
