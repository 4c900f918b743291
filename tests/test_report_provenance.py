"""The report says which code versions, environment and data its numbers came from."""
from __future__ import annotations

import json

from fersnet import paths, provenance
from fersnet.reports import report
from test_report import small_cfg, write_grid


def stamp_results(cfg, commit_of, dirty=False):
    """provenance.json beside every finished training run, judge and score of the grid."""
    for db in cfg["databases"]:
        for k in range(cfg["n_folds"]):
            folders = [paths.judge_dir(cfg, db, k)] + [paths.run_dir(cfg, db, m, k) for m in cfg["models"]]
            folders += [paths.synthesis_dir(cfg, db, m, k) for m in cfg["models"]]
            for folder in folders:
                if folder.is_dir():
                    code = {"git_commit": commit_of(db, k), "dirty": dirty, "source_hash": "abc"}
                    env = {"torch": "2.14.1", "device": "cpu", "cpu_capability": "AVX2"}
                    (folder / provenance.PROVENANCE).write_text(json.dumps({"code": code, "environment": env}))


def built_by(monkeypatch, commit: str) -> None:
    """The report is built by a clean checkout at `commit` (the code version it records)."""
    monkeypatch.setattr(provenance, "code_version", lambda: {"git_commit": commit, "dirty": False,
                                                               "version": "0.1.0", "source_hash": "abc"})


def test_one_clean_commit_is_stated_without_a_warning(tmp_path, monkeypatch):
    built_by(monkeypatch, "a" * 40)
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    write_grid(cfg, dbs=("ckplus",))
    stamp_results(cfg, lambda db, k: "a" * 40)
    summary = report.build_report(cfg)
    prov = summary["provenance"]
    assert list(prov["code"]) == ["aaaaaaa"] and not prov["mixed"]
    assert prov["code"]["aaaaaaa"]["training"] == len(cfg["models"]) * cfg["n_folds"]
    assert prov["torch"] == ["2.14.1"] and prov["cpu_capability"] == ["AVX2"]
    assert prov["data"]["ckplus"]["source"] == "stand-in"
    tex = (paths.reports_dir(cfg) / "report.tex").read_text()
    assert "aaaaaaa" in tex and "mixed code versions" not in tex and not prov["report_differs"]


def test_results_of_one_commit_built_into_a_report_by_another_are_flagged(tmp_path, monkeypatch):
    # a committed code change re-runs nothing: the report built after it must say its numbers predate it
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    write_grid(cfg, dbs=("ckplus",))
    stamp_results(cfg, lambda db, k: "a" * 40)
    built_by(monkeypatch, "c" * 40)
    prov = report.build_report(cfg)["provenance"]
    assert list(prov["code"]) == ["aaaaaaa"] and prov["report_code"] == "ccccccc"
    assert prov["mixed"] and prov["report_differs"]
    tex = " ".join((paths.reports_dir(cfg) / "report.tex").read_text().split())
    assert "Warning: mixed code versions" in tex and "not by the code version that built this report" in tex
    assert "Report built by \\texttt{ccccccc}" in tex
    built_by(monkeypatch, "a" * 40)                 # rebuilt by the results' own version: no warning
    prov = report.build_report(cfg)["provenance"]
    assert not prov["mixed"] and not prov["report_differs"]
    assert "mixed code versions" not in (paths.reports_dir(cfg) / "report.tex").read_text()


def test_results_stamped_by_another_commit_are_flagged_by_this_checkouts_report(tmp_path):
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    write_grid(cfg, dbs=("ckplus",))
    stamp_results(cfg, lambda db, k: "0" * 40)      # no checkout is at commit 0000000
    prov = report.build_report(cfg)["provenance"]
    assert prov["report_differs"] and prov["mixed"] and prov["report_code"] != "0000000"


def test_results_from_two_commits_are_flagged_in_the_pdf_source_and_summary(tmp_path):
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    cfg["data"]["ckplus"]["root"] = str(tmp_path / "licensed" / "CK+")
    write_grid(cfg, dbs=("ckplus",))
    stamp_results(cfg, lambda db, k: ("a" if k < 5 else "b") * 40)
    summary = report.build_report(cfg)
    prov = summary["provenance"]
    assert set(prov["code"]) == {"aaaaaaa", "bbbbbbb"} and prov["mixed"]
    assert prov["data"]["ckplus"]["source"] == "licensed copy"
    tex = (paths.reports_dir(cfg) / "report.tex").read_text()
    assert "Warning: mixed code versions" in tex and "bbbbbbb" in tex


def test_a_dirty_tree_is_flagged_too(tmp_path):
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    write_grid(cfg, dbs=("ckplus",))
    stamp_results(cfg, lambda db, k: "a" * 40, dirty=True)
    prov = report.build_report(cfg)["provenance"]
    assert prov["mixed"] and prov["dirty_results"] > 0 and "aaaaaaa+dirty(src abc)" in prov["code"]


def test_the_provenance_covers_every_seed_of_the_grid(tmp_path):
    from fersnet import config
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    cfg["run_seeds"] = [0, 1]
    for seed, commit in ((0, "a"), (1, "b")):
        seeded = config.with_seed(cfg, seed)
        write_grid(seeded, dbs=("ckplus",))
        stamp_results(seeded, lambda db, k, c=commit: c * 40)
    prov = provenance.results_provenance(cfg)
    runs = len(cfg["models"]) * cfg["n_folds"]
    assert prov["code"]["aaaaaaa"]["training"] == runs and prov["code"]["bbbbbbb"]["training"] == runs
    assert prov["mixed"]
