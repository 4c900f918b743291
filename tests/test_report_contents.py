"""What the report writes, as the workflow declares it: the files Snakemake's report rule declares
(fersnet/reports/contents.py), the HTML pages of the tables, the DVC plot data, and the params
the DVC report stage must declare."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fersnet import paths
from fersnet.reports import aggregate as agg
from fersnet.reports import contents, html_tables, report
from test_report import CORRECT, N_TEST, small_cfg, write_grid

ROOT = Path(__file__).resolve().parents[1]
HAVE_PDFLATEX = shutil.which("pdflatex") is not None


def built_report(tmp: Path, models: list[str], dbs=("ckplus",), n_folds: int = 2) -> tuple[dict, Path]:
    cfg = small_cfg(tmp, dbs)
    cfg["models"], cfg["n_folds"] = list(models), n_folds
    write_grid(cfg, dbs)
    report.build_report(cfg)
    return cfg, paths.reports_dir(cfg)


def written(out: Path, pattern: str) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.glob(pattern)}


@pytest.mark.parametrize("models", [
    ["fersnet", "no_mtl", "no_convflu", "fes_da", "stargan"],
    ["no_mtl", "stargan"],
    ["fersnet", "no_convflu"],
    ["stargan"],                         # no FER branch at all: no accuracy-only tables or figures
])
def test_the_report_writes_exactly_the_figures_tables_pdf_and_plots_the_workflow_declares(tmp_path, models):
    cfg, out = built_report(tmp_path, models)
    declared = {item.path for item in contents.report_items(cfg, pdf=HAVE_PDFLATEX)}
    assert declared == written(out, "figures/*.png") | written(out, "tables/*.html") | written(out, "report.pdf")
    assert set(contents.plot_files(cfg)) == written(out, "plots/**/*.csv")
    assert (out / contents.SUMMARY).is_file()


def test_report_items_file_each_database_under_its_name_and_model():
    cfg = {"databases": ["ckplus", "mmi"], "models": ["fersnet", "stargan"]}
    items = {i.path: i for i in contents.report_items(cfg, pdf=True)}
    assert (items["figures/confusion_mmi.png"].category, items["figures/confusion_mmi.png"].subcategory) == \
        ("MMI", "FERSNet")
    assert items["tables/synthesis_ckplus.html"].category == "CK+"
    assert items["report.pdf"].category == items["tables/fer_accuracy.html"].category == contents.OVERVIEW
    assert "report.pdf" not in {i.path for i in contents.report_items(cfg, pdf=False)}
    for item in items.values():
        assert (ROOT / "workflow" / "report" / f"{item.caption}.rst").is_file(), item.caption


def test_every_table_has_an_html_page_with_the_cells_of_the_latex_table(tmp_path):
    cfg, out = built_report(tmp_path, ["fersnet", "no_mtl", "no_convflu", "fes_da", "stargan"], ("ckplus", "oulu"))
    for tex in (out / "tables").glob("*.tex"):
        page = tex.with_suffix(".html").read_text()
        assert page.startswith("<!DOCTYPE html>") and "<caption>" in page, tex.name
        assert "\\" not in page and "$" not in page, tex.name        # no LaTeX left
    page = (out / "tables" / "fer_accuracy.html").read_text()
    assert '<th colspan="2">Accuracy (%) ↑</th>' in page
    best = 100 * pd.Series(CORRECT["fersnet"][:2]).div(N_TEST).mean()
    assert f"<b>{best:.2f} ± " in page                        # FERSNet's mean, bold as in the PDF
    assert "Fréchet" in (out / "tables" / "synthesis_ckplus.html").read_text()


def test_latex_of_a_cell_becomes_html():
    assert html_tables.inline(r"\textbf{89.25 $\pm$ 3.74} (7/10)") == "<b>89.25 ± 3.74</b> (7/10)"
    assert html_tables.inline(r"Acc. (\%) $\uparrow$ & $p_W$") == "Acc. (%) ↑ &amp; <i>p</i><sub><i>W</i></sub>"
    assert html_tables.inline(r"---: none; $<$0.001; \emph{not re-run}") == "—: none; &lt;0.001; <i>not re-run</i>"
    assert html_tables.inline(r"34.50$^{\dagger}$, vs.\ real") == "34.50<sup>†</sup>, vs. real"


def test_curve_plot_data_is_the_mean_over_folds_against_the_fraction_of_training_in_percent(tmp_path):
    cfg, out = built_report(tmp_path, ["fersnet", "stargan"])
    curves = pd.read_csv(out / contents.curve_plot("ckplus", "fersnet"))
    # write_fold's history: train_acc 0.3 -> 0.9 and test accuracy 0.25 -> 0.8 over 3 epochs, every fold
    assert list(curves.columns) == ["progress", "train_accuracy", "test_accuracy", "n_runs"]
    assert curves.progress.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0], abs=1e-4)
    assert curves.train_accuracy.tolist() == pytest.approx([30.0, 60.0, 90.0])
    assert curves.test_accuracy.tolist() == pytest.approx([25.0, 52.5, 80.0])
    assert curves.n_runs.tolist() == [cfg["n_folds"]] * 3
    confusion = pd.read_csv(out / contents.confusion_plot("ckplus"))
    assert len(confusion) == cfg["n_folds"] * N_TEST


def test_curves_of_runs_of_different_lengths_keep_every_run_behind_every_point():
    """A 2-epoch and a 4-epoch run: averaged per epoch, epochs 3-4 would be the long run alone (the
    curve would jump to its values); on the fraction scale every point has both, and the last point is
    the mean of both runs' last epochs."""
    short = pd.DataFrame({"epoch": [1, 2], "acc": [10.0, 50.0], "seed": 0, "fold": 0})
    long = pd.DataFrame({"epoch": [1, 2, 3, 4], "acc": [20.0, 40.0, 60.0, 90.0], "seed": 0, "fold": 1})
    curve = agg.progress_curve(pd.concat([short, long], ignore_index=True), "acc")
    assert curve.progress.tolist() == [0.5, 1.0]
    assert curve.n_runs.tolist() == [2, 2]
    assert curve["mean"].tolist() == pytest.approx([(10 + 40) / 2, (50 + 90) / 2])
    assert curve["min"].tolist() == [10.0, 50.0] and curve["max"].tolist() == [40.0, 90.0]
    assert agg.progress_curve(short, "missing").empty


class Reads(dict):
    """A config that records the dotted key of every value read from it."""

    def __init__(self, data: dict, log: set, prefix: str = ""):
        super().__init__(data)
        self.log, self.prefix = log, prefix

    def __getitem__(self, key):
        self.log.add(f"{self.prefix}{key}")
        return self._child(key)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def _child(self, key):
        value = super().__getitem__(key)
        return type(self)(value, self.log, f"{self.prefix}{key}.") if isinstance(value, dict) else value

    # iterating hands out the values without counting them as read: a reader that loops over a
    # section and uses one key of each entry records that key when it reads it
    def items(self):
        return [(k, self._child(k)) for k in self]

    def values(self):
        return [self._child(k) for k in self]


def test_the_dvc_report_stage_declares_every_param_the_report_reads(tmp_path):
    cfg = small_cfg(tmp_path, ("ckplus", "oulu"))
    cfg["n_folds"] = 2
    write_grid(cfg, ("ckplus", "oulu"))
    reads: set[str] = set()
    report.build_report(Reads(cfg, reads))
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["report"]
    declared = set(stage["params"])
    undeclared = {key for key in reads
                  if not any(key == d or key.startswith(d + ".") or d.startswith(key + ".") for d in declared)}
    assert not undeclared
    assert {"profile", "profiles"} <= declared           # a profile changes the values read
