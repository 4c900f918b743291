"""The report's "How the settings were chosen" paragraph (fersnet/reports/tuning.py): every setting
chosen on the stand-in's test folds is listed with the value chosen, and the report says it."""
from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

from fersnet import config, paths
from fersnet.reports import report, tuning
from test_report import small_cfg, write_grid

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_listed_is_a_params_key_whose_demo_default_is_the_value_chosen():
    demo = config.load(ROOT / "params.yaml", profile="demo")
    for key, chosen in tuning.chosen_settings():
        section, leaf = key.split(".")
        assert leaf in config.schema()[section], key
        assert tuning.value_of(demo, key) == chosen, f"{key}: the demo default is no longer the value chosen"


def test_the_paragraph_names_each_setting_and_marks_what_this_run_changes():
    demo = config.load(ROOT / "params.yaml", profile="demo")
    text = tuning.paragraph(demo)
    for key, _ in tuning.chosen_settings():
        assert key.replace("_", "\\_") in text, key
    assert "this run:" not in text                       # the demo runs with every chosen value
    assert "whose test folds these choices were made on" in text and "licensed copy" not in text

    paper = config.load(ROOT / "params.yaml", profile="paper")
    text = tuning.paragraph(paper)
    assert "\\texttt{train.lr\\_schedule: linear} (this run: multistep)" in text
    assert "\\texttt{model.condition: cin} (this run: concat)" in text
    assert "\\texttt{fes\\_da.real\\_share: 0.5}," in text   # the paper profile keeps it


def test_on_licensed_data_the_paragraph_says_nothing_was_tuned_on_it(tmp_path):
    cfg = config.load(ROOT / "params.yaml", profile="paper")
    cfg = copy.deepcopy(cfg)
    cfg["databases"] = ["ckplus", "oulu"]
    cfg["data"]["ckplus"]["root"] = str(tmp_path / "licensed" / "CK+")
    text = tuning.paragraph(cfg)
    assert "On CK+ (a licensed copy) nothing was tuned by the pipeline" in text
    assert "On Oulu-CASIA this run uses the stand-in" in text


def test_the_report_prints_the_paragraph(tmp_path):
    cfg = small_cfg(tmp_path, ("ckplus",))
    cfg["models"], cfg["n_folds"] = ["fersnet"], 2
    write_grid(cfg, ("ckplus",))
    report.build_report(cfg)
    tex = (paths.reports_dir(cfg) / "report.tex").read_text()
    assert "\\paragraph{How the settings were chosen.}" in tex
    assert tuning.paragraph(cfg) in tex
    if shutil.which("pdflatex"):
        assert (paths.reports_dir(cfg) / "report.pdf").is_file()
    assert re.search(r"never by the test fold", tex)
