"""`fersnet report` on hand-made fold results written in the exact contract format (docs/architecture.md)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fersnet import catalog, config, names, ownership, paths
from fersnet.errors import DataError
from fersnet.reports import aggregate as agg
from fersnet.reports import report, tables

ROOT = Path(__file__).resolve().parents[1]
SIX = ["anger", "disgust", "fear", "happy", "sadness", "surprise"]
HAVE_PDFLATEX = shutil.which("pdflatex") is not None
needs_latex = pytest.mark.skipif(not HAVE_PDFLATEX, reason="pdflatex not installed (see docs/reports.md)")

# Correct predictions out of N_TEST per fold: known accuracies, different per model and fold.
N_TEST = 40
CORRECT = {
    "fersnet": [36, 35, 37, 34, 36, 38, 35, 36, 37, 33],
    "no_mtl": [33, 34, 32, 35, 33, 34, 31, 33, 34, 32],
    "no_convflu": [35, 33, 36, 34, 35, 36, 34, 35, 36, 33],
    "fes_da": [36, 35, 37, 34, 36, 38, 35, 36, 37, 33],     # identical to fersnet: zero differences
    "fes_da_real": [35, 35, 36, 34, 35, 37, 35, 35, 36, 33],
}
# what FES-DA's fine-tuning set held (metrics.json), per fold k: synthetic faces = 5 x real
N_REAL = 300


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def write_fold(cfg: dict, db: str, model: str, fold: int, correct: int | None, *, classes=SIX,
               best_gap: int = 2, epochs: int = 3, percent: bool = False, extra: dict | None = None) -> Path:
    """One finished training job: history.csv, predictions.csv and metrics.json in the contract format.

    `correct` of N_TEST test images are right (None: stargan, no FER branch). The best epoch on
    test is `best_gap` predictions better than the selected last epoch. `extra` adds keys to
    metrics.json (without it, the file has no balanced_accuracy/macro_f1, as results made before them).
    """
    run = paths.run_dir(cfg, db, model, fold)
    run.mkdir(parents=True, exist_ok=True)
    k = len(classes)
    true = np.arange(N_TEST) % k
    pred = true.copy()
    if correct is not None:
        wrong = np.arange(N_TEST - correct)
        pred[wrong] = (true[wrong] + 1) % k
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (true, pred), 1)
    probs = {f"prob_{c}": np.eye(k)[pred][:, i] for i, c in enumerate(classes)}
    pd.DataFrame({"index": np.arange(N_TEST), "subject": [f"S{fold:03d}"] * N_TEST, "true": true,
                  "pred": pred, **probs}).to_csv(run / paths.PREDICTIONS, index=False)
    hist = {"epoch": np.arange(1, epochs + 1), "C/loss_ce": np.linspace(1.5, 0.5, epochs),
            "train_acc": np.linspace(0.3, 0.9, epochs), "test_acc_diagnostic": np.linspace(0.25, 0.8, epochs),
            "lr": [1e-4] * epochs, "seconds": [1.0] * epochs}
    if model in ("fersnet", "no_convflu", "stargan"):
        hist.update({"G/loss_adv": np.linspace(1.0, 0.7, epochs), "D/loss": np.linspace(1.2, 0.9, epochs)})
    if model == "fersnet":
        for d in ("fer", "fes"):
            for g in ("r", "z"):
                for lvl in (1, 2, 3):
                    hist[f"gate/{d}_{g}_l{lvl}"] = np.linspace(0.5, 0.3 + 0.1 * lvl, epochs)
    pd.DataFrame(hist).to_csv(run / paths.HISTORY, index=False)
    scale = 100.0 if percent else 1.0
    acc = None if correct is None else scale * correct / N_TEST
    best = None if correct is None else scale * min(N_TEST, correct + best_gap) / N_TEST
    write_json(run / paths.METRICS, {
        "db": db, "model": model, "fold": fold, "classes": list(classes), "accuracy": acc,
        "per_class_recall": (np.diag(confusion) / confusion.sum(1)).tolist(), "confusion": confusion.tolist(),
        "n_test": N_TEST, "selected_epoch": epochs, "selection": "last", "best_epoch_test_accuracy": best,
        "best_epoch": max(1, epochs - 1), "epochs": epochs, "seconds": 3.0, "device": "cpu", **(extra or {})})
    return run


def write_scores(cfg: dict, db: str, model: str, fold: int, judge: float, *, fid: float | None = 40.0,
                 ssim: float = 0.5) -> Path:
    """One scored synthesis folder (scores.json + grid.png); fid=None: Inception weights unavailable."""
    syn = paths.synthesis_dir(cfg, db, model, fold)
    syn.mkdir(parents=True, exist_ok=True)
    scores = {"judge_accuracy": judge, "judge_accuracy_per_target": {c: judge for c in SIX},
              "ssim": ssim, "psnr": 20.0, "n_pairs": 30, "judge_fid_n240": 5.0 + fold, "fid_reference": "test",
              # what copying the input and the real target face score on this fold (score.py REFERENCE_ROWS)
              "references": {"copy_input": {"judge_accuracy": 0.1, "judge_fid": 60.0 + fold, "ssim": 0.9,
                                            "psnr": 30.0, "fid": None if fid is None else 80.0, "kid": None},
                             "real_target": {"judge_accuracy": 0.9, "judge_fid": 1.0 + fold, "ssim": 0.95,
                                             "psnr": 40.0, "fid": None if fid is None else 2.0, "kid": None}}}
    if fid is None:
        scores.update(fid_n240=None, kid_n240=None, fid=None, kid=None,
                      fid_unavailable="Inception weights not in the hub cache (/root/.cache/torch/hub/checkpoints/"
                                      "pt_inception.pth) and downloads are off; copy the file here")
    else:
        scores.update(fid_n240=fid, kid_n20=fid / 1000, kid_n20_std=0.001)
    write_json(syn / paths.SCORES, scores)
    from PIL import Image
    Image.fromarray((np.indices((48, 72)).sum(0) % 255).astype(np.uint8)).save(syn / paths.SYNTH_GRID)
    return syn


def write_judge(cfg: dict, db: str, fold: int, correct: int) -> Path:
    """A finished judge of one fold: metrics.json with its accuracy on the real test faces."""
    path = paths.judge_dir(cfg, db, fold) / paths.METRICS
    write_json(path, {"accuracy": correct / N_TEST, "classes": SIX, "confusion": None, "seconds": 1.0})
    return path


def write_grid(cfg: dict, dbs=("ckplus", "oulu"), fid_available: bool = True, skip=()) -> None:
    """Every model x fold of `dbs` plus the judges, minus the (db, model, fold) triples in `skip`."""
    for db in dbs:
        for k in range(cfg["n_folds"]):
            write_judge(cfg, db, k, 38 - k % 2)
        for model in cfg["models"]:
            for k in range(cfg["n_folds"]):
                if (db, model, k) in skip:
                    continue
                sizes = {"n_train_real": N_REAL + k, "n_train_synthetic": 5 * (N_REAL + k) if model == "fes_da" else 0}
                write_fold(cfg, db, model, k, CORRECT[model][k] if model in CORRECT else None, extra=sizes)
                if model in catalog.generators():
                    write_scores(cfg, db, model, k, judge=0.5 + 0.01 * k + 0.1 * (model == "fersnet"),
                                 fid=(30.0 + k + 5 * (model == "stargan")) if fid_available else None)


def small_cfg(tmp: Path, dbs=("ckplus", "oulu")) -> dict:
    """The test profile with outputs under `tmp` and two databases (keeps the report build short)."""
    cfg = config.load(ROOT / "params.yaml", profile="test")
    cfg["paths"]["results"] = str(tmp / "results")
    cfg["paths"]["reports"] = str(tmp / "reports")
    cfg["databases"] = list(dbs)
    cfg["mlflow"]["enabled"] = False
    return cfg


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One full report over a complete grid (2 databases, FID available), shared by the read-only tests."""
    cfg = small_cfg(tmp_path_factory.mktemp("built"))
    write_grid(cfg)
    summary = report.build_report(cfg)
    return cfg, summary, paths.reports_dir(cfg)


def compile_standalone(tex_file: Path, workdir: Path) -> subprocess.CompletedProcess:
    doc = workdir / "standalone.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                   f"\\input{{{tex_file.with_suffix('').as_posix()}}}\n\\end{{document}}\n")
    return subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                          cwd=workdir, capture_output=True, text=True, timeout=120)


def test_fold_accuracy_aggregates_to_known_mean_and_sample_std(tmp_path):
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    for k in range(cfg["n_folds"]):
        write_fold(cfg, "ckplus", "fersnet", k, CORRECT["fersnet"][k])
    col = agg.collect(cfg)
    s = agg.accuracy_stats(col.folds, "ckplus", "fersnet")
    expected = 100 * np.array(CORRECT["fersnet"]) / N_TEST
    assert s["n"] == 10
    assert s["mean"] == pytest.approx(expected.mean())
    assert s["std"] == pytest.approx(expected.std(ddof=1))


def test_accuracy_stored_as_percent_reads_the_same_as_fraction(tmp_path):
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    write_fold(cfg, "ckplus", "fersnet", 0, 36)
    write_fold(cfg, "ckplus", "fersnet", 1, 36, percent=True)
    acc = agg.fold_values(agg.collect(cfg).folds, "ckplus", "fersnet")
    assert acc == {0: pytest.approx(90.0), 1: pytest.approx(90.0)}


def test_paired_tests_equal_scipy_wilcoxon_and_ttest():
    rng = np.random.default_rng(1)
    x = 90 + rng.normal(0, 2, 10)
    y = x - rng.uniform(0.5, 3, 10)
    t = agg.paired_tests(dict(enumerate(x)), dict(enumerate(y)))
    assert t["n_pairs"] == 10
    assert t["p_wilcoxon"] == pytest.approx(stats.wilcoxon(x, y).pvalue)
    assert t["p_ttest"] == pytest.approx(stats.ttest_rel(x, y).pvalue)
    assert t["p_wilcoxon"] == pytest.approx(2 / 2 ** 10)     # all 10 differences positive: the smallest p


def test_paired_tests_with_identical_folds_give_p_one_and_too_few_pairs_give_nan():
    same = agg.paired_tests({0: 90.0, 1: 85.0, 2: 88.0}, {0: 90.0, 1: 85.0, 2: 88.0})
    assert same["p_wilcoxon"] == 1.0 and same["p_ttest"] == 1.0
    single = agg.paired_tests({0: 90.0, 1: 85.0}, {1: 80.0})
    assert single["n_pairs"] == 1 and np.isnan(single["p_wilcoxon"]) and np.isnan(single["p_ttest"])


def test_paired_tests_use_only_folds_both_models_finished():
    ref = {k: 90.0 + k for k in range(10)}
    other = {k: 88.0 + 0.5 * k for k in range(0, 10, 2)}
    t = agg.paired_tests(ref, other)
    common = sorted(other)
    assert t["n_pairs"] == 5
    assert t["p_ttest"] == pytest.approx(stats.ttest_rel([ref[k] for k in common], [other[k] for k in common]).pvalue)


def test_ablation_table_shows_the_same_p_values_as_scipy(built):
    cfg, summary, _ = built
    x = 100 * np.array(CORRECT["fersnet"]) / N_TEST
    y = 100 * np.array(CORRECT["no_mtl"]) / N_TEST
    entry = summary["measured"]["ckplus"]["no_mtl"]
    assert entry["p_wilcoxon_vs_fersnet"] == pytest.approx(stats.wilcoxon(x, y).pvalue)
    assert entry["p_ttest_vs_fersnet"] == pytest.approx(stats.ttest_rel(x, y).pvalue)
    # fes_da equals fersnet fold by fold: zero differences are handled, not an error
    assert summary["measured"]["ckplus"]["fes_da"]["p_wilcoxon_vs_fersnet"] == 1.0


def test_ablation_caption_gives_fes_da_synthetic_counts_and_its_effect_against_the_real_only_control(built):
    cfg, summary, out = built
    tex = (out / "tables" / "ablation.tex").read_text()
    real = N_REAL + np.mean(range(10))
    assert f"Oulu-CASIA {5 * real:,.0f} (to {real:,.0f} real)" in tex
    assert names.MODEL["fes_da_real"] in tex and "not that of the extra epochs" in tex
    assert "the real faces repeated to about 50\\% of the samples" in tex
    assert "every class of the set, real and synthetic faces together, holding the same number" in tex
    x = 100 * np.array(CORRECT["fes_da"]) / N_TEST
    y = 100 * np.array(CORRECT["fes_da_real"]) / N_TEST
    assert f"CK+ {(x - y).mean():+.2f} pp ($p_W$ {stats.wilcoxon(x, y).pvalue:.3f}" in tex


def test_missing_folds_are_shown_with_count_and_absent_model_as_dash(tmp_path):
    cfg = small_cfg(tmp_path, dbs=("ckplus", "oulu"))
    skip = {("ckplus", "no_convflu", k) for k in (1, 4, 7)} | {("oulu", "no_mtl", k) for k in range(10)}
    write_grid(cfg, skip=skip)
    tex = tables.fer_accuracy(cfg, agg.collect(cfg))
    row = next(ln for ln in tex.splitlines() if names.MODEL["no_convflu"] in ln)
    kept = 100 * np.array([c for k, c in enumerate(CORRECT["no_convflu"]) if k not in (1, 4, 7)]) / N_TEST
    assert f"{kept.mean():.2f} $\\pm$ {kept.std(ddof=1):.2f} (7/10)" in row
    no_mtl_row = next(ln for ln in tex.splitlines() if names.MODEL["no_mtl"] in ln)
    assert no_mtl_row.rstrip(" \\").split("&")[-1].strip() == tables.DASH


def test_corrupt_metrics_file_counts_as_a_failed_fold_and_is_listed(tmp_path, capsys):
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    for k in range(3):
        write_fold(cfg, "ckplus", "fersnet", k, 30 + k)
    bad = paths.run_dir(cfg, "ckplus", "fersnet", 1) / paths.METRICS
    bad.write_text("{ not json")
    col = agg.collect(cfg)
    assert agg.accuracy_stats(col.folds, "ckplus", "fersnet")["n"] == 2
    assert [p.file for p in col.problems] == [str(bad)]
    assert str(bad) in capsys.readouterr().err


def test_no_results_at_all_is_a_clear_error(tmp_path):
    cfg = small_cfg(tmp_path)
    with pytest.raises(DataError, match="no finished results"):
        report.build_report(cfg)


def test_confusion_table_is_row_normalised_percent_summed_over_folds(built):
    cfg, _, out = built
    tex = (out / "tables" / "confusion_ckplus.tex").read_text()
    # write_fold gets the first N_TEST - correct images wrong; true label = index % 6; anger has 7 per fold
    wrong_anger = sum(sum(1 for i in range(N_TEST - c) if i % len(SIX) == 0) for c in CORRECT["fersnet"])
    recall = 100 * (70 - wrong_anger) / 70
    anger_row = next(ln for ln in tex.splitlines() if ln.startswith("Anger"))
    assert f"\\textbf{{{recall:.1f}}}" in anger_row


def test_summary_json_holds_means_stds_and_fold_counts(built):
    cfg, summary, out = built
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(report._json_safe(summary)))
    measured = on_disk["measured"]
    fer = measured["oulu"]["fersnet"]
    acc = 100 * np.array(CORRECT["fersnet"]) / N_TEST
    assert fer["n_folds"] == 10
    assert fer["accuracy_mean"] == pytest.approx(acc.mean())
    assert fer["accuracy_std"] == pytest.approx(acc.std(ddof=1))
    assert measured["oulu"]["stargan"]["n_folds"] == 10 and "accuracy_mean" not in measured["oulu"]["stargan"]
    assert on_disk["pdf"] == ("compiled" if HAVE_PDFLATEX else on_disk["pdf"])
    assert measured["ckplus"]["stargan"]["synthesis_fid_available"] is True


def test_headline_json_is_a_few_numbers_per_database_and_model_taken_from_summary_json(built):
    """headline.json, the DVC metric: FER accuracy and balanced accuracy for FER models, judged synthesis
    and FID for generators, each the same number as summary.json's; tens of numbers, not hundreds."""
    cfg, _, out = built
    headline = json.loads((out / "headline.json").read_text())
    measured = json.loads((out / "summary.json").read_text())["measured"]
    n_numbers = 0
    for db in cfg["databases"]:
        for model, numbers in headline[db].items():
            for name, value in numbers.items():
                assert value == pytest.approx(measured[db][model][report.HEADLINE_KEYS[name]]), (db, model, name)
                n_numbers += 1
        assert set(headline[db]["fersnet"]) == {"accuracy", "balanced_accuracy", "judged_synthesis", "fid"}
        assert set(headline[db]["stargan"]) == {"judged_synthesis", "fid"}
        assert set(headline[db]["fes_da"]) == {"accuracy", "balanced_accuracy"}
    assert n_numbers <= 100


def test_summary_json_keeps_measured_and_published_apart_and_labels_the_test_selected_number(built):
    cfg, summary, out = built
    on_disk = json.loads((out / "summary.json").read_text())
    assert set(on_disk["notes"]) == {"measured", "published", "diagnostic"}
    assert on_disk["published"]["oulu"] == {"fersnet": 83.47, "fersnet_pretrained_bu4dfe": 89.23}
    assert "Zhao et al." in on_disk["published"]["source"]
    for db in cfg["databases"]:
        measured = on_disk["measured"][db]
        assert measured["data_source"] == on_disk["provenance"]["data"][db]["source"] == "stand-in"
        for model, entry in measured.items():
            if model == "data_source":
                continue
            assert not any("paper" in key or "published" in key for key in entry), (db, model)
            assert "best_epoch_test_accuracy_mean" not in entry
    fer = on_disk["measured"]["ckplus"]["fersnet"]
    best = 100 * np.minimum(N_TEST, np.array(CORRECT["fersnet"]) + 2) / N_TEST
    assert fer["diagnostic"] == {"best_epoch_test_accuracy_mean": pytest.approx(best.mean())}
    fes_da = on_disk["measured"]["ckplus"]["fes_da"]
    x = 100 * np.array(CORRECT["fes_da"]) / N_TEST
    y = 100 * np.array(CORRECT["fes_da_real"]) / N_TEST
    assert fes_da["mean_diff_vs_fes_da_real"] == pytest.approx((x - y).mean())
    no_mtl = 100 * np.array(CORRECT["no_mtl"]) / N_TEST
    fersnet = 100 * np.array(CORRECT["fersnet"]) / N_TEST
    assert on_disk["measured"]["ckplus"]["no_mtl"]["mean_diff_vs_fersnet"] == pytest.approx((no_mtl - fersnet).mean())
    assert fes_da["n_train_synthetic_mean"] == pytest.approx(5 * (N_REAL + 4.5))
    assert on_disk["measured"]["ckplus"]["fersnet"]["synthesis_losses"] == "adv, L1, cyc, expr 0.3"
    assert on_disk["measured"]["ckplus"]["fersnet"]["synthesis_psnr_mean"] == pytest.approx(20.0)


def test_summary_json_names_a_licensed_copy_as_such(tmp_path):
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    cfg["models"] = ["fersnet"]
    write_grid(cfg, dbs=("ckplus",))
    cfg["data"]["ckplus"]["root"] = str(tmp_path / "licensed" / "CK+")      # outside synth.out
    summary = report.build_summary(cfg, agg.collect(cfg), {}, {})
    assert summary["measured"]["ckplus"]["data_source"] == "licensed copy"


def test_protocol_table_gap_equals_best_epoch_minus_selected(built):
    _, _, out = built
    tex = (out / "tables" / "protocol.tex").read_text()
    gap = 100 * 2 / N_TEST          # write_fold's best epoch is 2 predictions better
    assert f"{gap:.2f} $\\pm$ 0.00" in tex


def test_confusion_plot_csv_has_one_row_per_fersnet_prediction(built):
    cfg, _, out = built
    plot = pd.read_csv(out / "plots" / "confusion" / "ckplus.csv")
    assert list(plot.columns) == ["actual", "predicted"]
    assert len(plot) == cfg["n_folds"] * N_TEST
    assert (plot.actual == plot.predicted).sum() == sum(CORRECT["fersnet"])


def test_report_writes_every_figure_and_table(built):
    cfg, _, out = built
    for db in cfg["databases"]:
        for fig in (f"confusion_{db}.png", f"training_curves_{db}.png", f"gates_{db}.png", f"synthesis_grid_{db}.png"):
            assert (out / "figures" / fig).stat().st_size > 0, fig
        assert (out / "tables" / f"synthesis_{db}.tex").is_file()
    assert (out / "figures" / "fold_accuracy.png").stat().st_size > 0
    assert not [p for p in out.parent.iterdir() if ownership._parse(p.name)]   # the staging folder is gone


@needs_latex
def test_report_tex_compiles_to_pdf(built):
    _, summary, out = built
    assert summary["pdf"] == "compiled"
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    tex = (out / "report.tex").read_text()
    for table in (out / "tables").glob("*.tex"):
        assert f"\\input{{tables/{table.stem}}}" in tex


@needs_latex
def test_each_generated_table_compiles_standalone_with_booktabs(built, tmp_path):
    _, _, out = built
    tex_files = sorted((out / "tables").glob("*.tex"))
    assert len(tex_files) >= 8
    for tex in tex_files:
        run = compile_standalone(tex, tmp_path)
        assert run.returncode == 0, f"{tex.name}: " + "\n".join(ln for ln in run.stdout.splitlines() if ln.startswith("!"))


@needs_latex
def test_a_table_widened_by_missing_folds_is_scaled_to_the_width_of_the_page(tmp_path):
    """`(k/10)` in the cells of a database with unfinished folds makes the synthesis table wider than
    A4's text; in the report's page setting (graphicx loaded) it is scaled to the line. Without
    graphicx (a document with booktabs alone) it still compiles, set at its natural width."""
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    write_grid(cfg, dbs=("ckplus",), skip={("ckplus", "no_convflu", k) for k in (1, 4, 7)})
    tex, _ = tables.synthesis(cfg, agg.collect(cfg), "ckplus")
    (tmp_path / "synthesis.tex").write_text(tex)

    def overfull(packages: str) -> list[float]:
        (tmp_path / "page.tex").write_text(
            "\\documentclass[a4paper,10pt]{article}\n\\usepackage[margin=1.6cm]{geometry}\n"
            f"{packages}\\begin{{document}}\n\\input{{synthesis}}\n\\end{{document}}\n")
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "page.tex"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout[-2000:]
        log = (tmp_path / "page.log").read_text()
        return [float(pt) for pt in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]

    assert max(overfull("\\usepackage{booktabs}\n")) > 100     # as set, ~130 pt past the text
    assert overfull("\\usepackage{booktabs}\n\\usepackage{graphicx}\n") == []


def test_balanced_table_shows_the_balanced_accuracy_and_macro_f1_of_metrics_json(tmp_path):
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    for k, (balanced, f1) in enumerate([(0.5, 0.40), (0.6, 0.45), (0.7, 0.50)]):
        write_fold(cfg, "ckplus", "fersnet", k, CORRECT["fersnet"][k], extra={"balanced_accuracy": balanced,
                                                                             "macro_f1": f1})
    tex = tables.fer_balanced(cfg, agg.collect(cfg))
    row = next(ln for ln in tex.splitlines() if "& FERSNet &" in ln)
    n = cfg["n_folds"]
    assert f"60.00 $\\pm$ 10.00 (3/{n})" in row and f"45.00 $\\pm$ 5.00 (3/{n})" in row
    assert "Balanced acc." in tex and "Macro-F1" in tex and "ddof=1" in tex


def test_results_without_the_balanced_keys_get_them_from_their_confusion_matrix(built):
    from sklearn.metrics import balanced_accuracy_score, f1_score
    cfg, summary, out = built
    per_fold = []
    for k in range(cfg["n_folds"]):
        p = pd.read_csv(paths.run_dir(cfg, "ckplus", "fersnet", k) / paths.PREDICTIONS)
        per_fold.append((balanced_accuracy_score(p.true, p.pred), f1_score(p.true, p.pred, average="macro")))
    balanced, f1 = 100 * np.array(per_fold).T
    fer = summary["measured"]["ckplus"]["fersnet"]
    assert fer["balanced_accuracy_mean"] == pytest.approx(balanced.mean())
    assert fer["macro_f1_std"] == pytest.approx(f1.std(ddof=1))
    tex = (out / "tables" / "fer_balanced.tex").read_text()
    assert f"{balanced.mean():.2f} $\\pm$ {balanced.std(ddof=1):.2f}" in tex
    assert f"{f1.mean():.2f} $\\pm$ {f1.std(ddof=1):.2f}" in tex


def test_bold_marks_the_best_mean_in_the_fer_table(built):
    _, _, out = built
    tex = (out / "tables" / "fer_accuracy.tex").read_text()
    fersnet = 100 * np.mean(CORRECT["fersnet"]) / N_TEST      # fersnet and fes_da tie for best
    assert tex.count(f"\\textbf{{{fersnet:.2f} $\\pm$") == 2 * 2   # 2 models x 2 databases
    assert "Reported" in tex and "not re-run" in tex and "97.35" in tex


def test_synthesis_table_with_fid_unavailable_shows_na_and_footnote(tmp_path):
    cfg = small_cfg(tmp_path, dbs=("mmi",))
    write_grid(cfg, dbs=("mmi",), fid_available=False)
    tex, numbers = tables.synthesis(cfg, agg.collect(cfg), "mmi")
    assert tex.count("n/a$^{a}$") == 2 * 6                        # FID and KID of 4 generators, 2 reference rows
    assert "$^{a}$ FID/KID unavailable" in tex and "fid.inception\\_weights" in tex
    assert "torch hub cache" in tex
    assert "Inception weights not in the hub cache and downloads are off." in tex   # long path left out
    assert numbers["fersnet"]["fid_unavailable"].startswith("Inception weights not in the hub cache")
    if HAVE_PDFLATEX:
        (tmp_path / "syn.tex").write_text(tex)
        run = compile_standalone(tmp_path / "syn.tex", tmp_path)
        assert run.returncode == 0, run.stdout[-2000:]


def test_synthesis_table_headers_carry_sample_size_and_bold_min_fid(built):
    _, _, out = built
    tex = (out / "tables" / "synthesis_ckplus.tex").read_text()
    header = tex.splitlines()[tex.splitlines().index("\\toprule") + 1:][:2]
    assert header[0].split("&")[3:6] == [" FID ", " KID ", " Judge FD "]
    assert header[1].split("&")[3:6] == [" $\\downarrow$ ($n$=240) ", " $\\downarrow$ ($n$=20) ", " $\\downarrow$ ($n$=240) "]
    best = np.mean([30.0 + k for k in range(10)])          # the three non-StarGAN generators tie
    assert len(re.findall(re.escape(f"\\textbf{{{best:.2f} $\\pm$"), tex)) == 3
    assert "$^{\\dagger}$" in tex                           # no pooled file: per-fold mean, marked


def test_synthesis_table_names_the_losses_of_each_generator_and_says_the_expression_weight_is_shared(built):
    _, _, out = built
    tex = (out / "tables" / "synthesis_ckplus.tex").read_text()
    rows = {name: next(ln for ln in tex.splitlines() if ln.startswith(names.GENERATOR[name] + " &"))
            for name in ("fersnet", "no_mtl", "no_convflu", "stargan")}
    cells = {m: row.split("&")[1].strip() for m, row in rows.items()}
    assert cells == {"fersnet": "adv, L1, cyc, expr 0.3", "no_convflu": "adv, L1, cyc, expr 0.3",
                     "no_mtl": "adv, L1, cyc", "stargan": "adv, rec, cls 1"}
    assert ("Every generator with a FER branch (FERSNet, FERSNet w/o ConvFLU) takes the expression loss with "
            "the same weight, 0.3") in tex
    assert "Single-task FES has no FER branch" in tex and "domain classification" in tex


def test_losses_column_reads_the_weights_the_runs_were_trained_with(tmp_path):
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    write_grid(cfg, dbs=("ckplus",))
    for k in range(cfg["n_folds"]):                    # no_convflu trained with another expression weight
        run_cfg = json.loads(json.dumps(cfg))
        run_cfg["train"]["lambda_expr"] = 1.0
        write_json(paths.run_dir(cfg, "ckplus", "no_convflu", k) / paths.CONFIG, run_cfg)
    tex, _ = tables.synthesis(cfg, agg.collect(cfg), "ckplus")
    row = next(ln for ln in tex.splitlines() if ln.startswith(names.GENERATOR["no_convflu"] + " &"))
    assert row.split("&")[1].strip() == "adv, L1, cyc, expr 1"
    assert "took the expression loss with different weights" in tex and "not comparable" in tex


def test_synthesis_table_reports_psnr_mean_and_std_over_folds(tmp_path):
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    write_grid(cfg, dbs=("ckplus",))
    psnr = 18.0 + np.arange(cfg["n_folds"])
    for k in range(cfg["n_folds"]):
        path = paths.synthesis_dir(cfg, "ckplus", "fersnet", k) / paths.SCORES
        write_json(path, dict(json.loads(path.read_text()), psnr=float(psnr[k])))
    tex, numbers = tables.synthesis(cfg, agg.collect(cfg), "ckplus")
    assert "PSNR (dB)" in tex
    row = next(ln for ln in tex.splitlines() if ln.startswith(names.GENERATOR["fersnet"] + " &"))
    assert row.rstrip(" \\").split("&")[-1].strip() == f"\\textbf{{{psnr.mean():.1f} $\\pm$ {psnr.std(ddof=1):.1f}}}"
    assert numbers["fersnet"]["psnr_mean"] == pytest.approx(psnr.mean())


def test_pooled_synthesis_scores_take_precedence_over_fold_means(tmp_path):
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    write_grid(cfg, dbs=("ckplus",))
    write_json(paths.pooled_file(cfg, "ckplus", "fersnet", 0),
               {"fid_n2400": 12.345, "kid_n100": {"mean": 0.0123, "std": 0.0011}})
    tex, numbers = tables.synthesis(cfg, agg.collect(cfg), "ckplus")
    assert numbers["fersnet"]["fid"] == pytest.approx(12.345)
    row = next(ln for ln in tex.splitlines() if ln.startswith(names.GENERATOR["fersnet"]))
    assert "\\textbf{12.35}" in row and "0.0123 $\\pm$ 0.0011" in row


def test_synthesis_table_shows_the_copy_input_and_real_target_rows_and_never_bolds_them(built):
    """The reference rows beat every generator on judge FD, SSIM and PSNR (real target) or FID (none:
    copy 80, real 2): bold still marks the best generator only."""
    _, summary, out = built
    tex = (out / "tables" / "synthesis_ckplus.tex").read_text()
    lines = tex.splitlines()
    copy = next(ln for ln in lines if ln.startswith("\\emph{Copy input} &"))
    real = next(ln for ln in lines if ln.startswith("\\emph{Real target} &"))
    assert "\\textbf" not in copy and "\\textbf" not in real
    judge_fd = np.mean([1.0 + k for k in range(10)])
    assert f"{judge_fd:.2f} $\\pm$" in real and "0.950" in real and f"{np.mean([60.0 + k for k in range(10)]):.2f}" in copy
    assert lines.index(copy) == lines.index(next(ln for ln in lines if ln.startswith("StarGAN &"))) + 2  # after a rule
    assert "\\textbf{" + f"{np.mean([5.0 + k for k in range(10)]):.2f}" in tex          # best generator's judge FD
    assert "Copy input}, the input face returned unchanged" in tex and "class-conditional" in tex
    refs = summary["measured"]["ckplus"]["synthesis_references"]
    assert refs["real_target"]["judge_fd_mean"] == pytest.approx(judge_fd)


def test_scores_made_before_the_class_conditional_metrics_are_counted_as_missing(tmp_path):
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    write_grid(cfg, dbs=("ckplus",))
    path = paths.synthesis_dir(cfg, "ckplus", "fersnet", 3) / paths.SCORES
    old = json.loads(path.read_text())
    del old["fid_reference"]
    write_json(path, old)
    col = agg.collect(cfg)
    assert [p.file for p in col.problems] == [str(path)] and "class-conditional" in col.problems[0].reason
    assert "--fold 3 --force" in col.problems[0].reason
    tex, numbers = tables.synthesis(cfg, col, "ckplus")
    assert numbers["fersnet"]["n_runs"] == cfg["n_folds"] - 1


def test_synthesis_table_shows_the_judge_on_real_faces_as_the_ceiling(built):
    _, _, out = built
    tex = (out / "tables" / "synthesis_oulu.tex").read_text()
    real = 100 * np.array([38 - k % 2 for k in range(10)]) / N_TEST
    row = next(ln for ln in tex.splitlines() if ln.startswith("\\emph{Real test faces}"))
    assert f"{real.mean():.2f} $\\pm$ {real.std(ddof=1):.2f}" in row


def test_cli_report_without_results_exits_2_with_a_message_naming_the_folder(tmp_path, capsys):
    import yaml

    from fersnet import cli
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"] = {"results": str(tmp_path / "results"), "reports": str(tmp_path / "reports")}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    assert cli.main(["report", "--params", str(params), "--profile", "test"]) == 2
    err = capsys.readouterr().err
    assert "no finished results" in err and str(tmp_path / "results") in err and "Traceback" not in err


def test_report_without_pdflatex_writes_tex_and_says_pdf_skipped(tmp_path, monkeypatch, capsys):
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    cfg["models"] = ["fersnet"]
    write_grid(cfg, dbs=("ckplus",))
    stale = paths.reports_dir(cfg) / "report.pdf"
    ownership.claim_folder(stale.parent, "fersnet report")        # an earlier report's folder
    stale.write_bytes(b"%PDF- old")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))       # no pdflatex on PATH
    summary = report.build_report(cfg)
    assert summary["pdf"].startswith("skipped: pdflatex not installed")
    assert "report.pdf skipped" in capsys.readouterr().err
    out = paths.reports_dir(cfg)
    assert (out / "report.tex").is_file() and not stale.exists()   # no stale PDF left beside the new tables
    assert json.loads((out / "summary.json").read_text())["pdf"] == summary["pdf"]


@needs_latex
def test_latex_error_keeps_the_previous_report_and_names_the_log(tmp_path, monkeypatch):
    from fersnet.errors import FersnetError
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    cfg["models"] = ["fersnet"]
    write_grid(cfg, dbs=("ckplus",))
    out = paths.reports_dir(cfg)
    out.mkdir(parents=True)
    (out / "summary.json").write_text('{"previous": true}')
    broken = tmp_path / "tpl" / "report.tex.j2"
    broken.parent.mkdir()
    broken.write_text(report.TEMPLATE.read_text().replace("\\maketitle", "\\maketitle\\undefinedcommand"))
    monkeypatch.setattr(report, "TEMPLATE", broken)
    with pytest.raises(FersnetError, match="report.log"):
        report.build_report(cfg)
    assert json.loads((out / "summary.json").read_text()) == {"previous": True}
    assert "Undefined control sequence" in (out / "report.log").read_text()
    assert not (out / "tables").exists() and not [p for p in out.parent.iterdir() if ownership._parse(p.name)]


PAPER_PREAMBLE = ("\\documentclass[10pt,twocolumn]{article}\n"
                  "\\usepackage[letterpaper,margin=0.75in,columnsep=0.25in]{geometry}\n"   # IEEEtran's 7 in text
                  "\\usepackage{booktabs}\n\\begin{document}\nSome text of the paper.\n")


@pytest.mark.skipif(not HAVE_PDFLATEX, reason="pdflatex not installed")
def test_paper_tables_drop_into_a_two_column_paper_without_an_overfull_box(tmp_path):
    """tables/paper/: every table with a one-sentence caption, its notes apart, inputs into a two-column
    article with booktabs and no graphicx (nothing scales it), three databases wide, and no box runs
    more than 1 pt past its column or the page."""
    dbs = ("ckplus", "oulu", "mmi")
    cfg = small_cfg(tmp_path, dbs=dbs)
    write_grid(cfg, dbs=dbs)
    report.build_report(cfg)
    folder = paths.reports_dir(cfg) / "tables" / "paper"
    names = sorted(p.stem for p in folder.glob("*.tex") if not p.stem.endswith("_notes"))
    assert set(names) == {p.stem for p in (paths.reports_dir(cfg) / "tables").glob("*.tex")}
    for name in names:
        tex = (folder / f"{name}.tex").read_text()
        (caption,) = re.findall(r"\\caption\{(.*)\}", tex)
        assert caption == tables.short_caption(caption) and len(caption) <= 200, (name, caption)
        assert "\\smallskip" not in tex and "`" not in tex, name
        assert ("table*" in tex) == (not name.startswith("confusion_")), name
    assert "Mean $\\pm$ sample standard deviation" in (folder / "fer_accuracy_notes.tex").read_text()
    body = "".join(f"\\input{{{(folder / n).as_posix()}}}\n\\input{{{(folder / n).as_posix()}_notes}}\n\\clearpage\n"
                   for n in names)
    (tmp_path / "paper.tex").write_text(PAPER_PREAMBLE + body + "\\end{document}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path,
                         capture_output=True, text=True, errors="replace", timeout=300)
    assert run.returncode == 0, run.stdout[-3000:]
    log = (tmp_path / "paper.log").read_text(errors="replace")
    overfull = [float(x) for x in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]
    assert all(x <= 1.0 for x in overfull), overfull


def test_differences_carry_a_real_minus_and_code_in_backticks_is_typewriter():
    assert tables.signed(-0.354) == "$-$0.35" and tables.signed(1.2) == "+1.20" and tables.signed(0.0) == "+0.00"
    assert tables.tex_escape("set `fid.download` (50%)") == "set \\texttt{fid.download} (50\\%)"
    assert tables.tex_escape("a lone ` mark") == "a lone \\textasciigrave{} mark"


def test_the_short_caption_is_the_first_sentence_outside_math_and_abbreviations():
    assert tables.short_caption("FER accuracy per database. Re-run: this benchmark.") == "FER accuracy per database."
    assert tables.short_caption("Paired tests, e.g. Wilcoxon vs. t. More.") == "Paired tests, e.g. Wilcoxon vs. t."
    assert tables.short_caption("Mean $x. Y$ of runs. Rest.") == "Mean $x. Y$ of runs."
    assert tables.short_caption("One sentence only.") == "One sentence only."


def test_a_generator_no_better_than_copying_its_input_is_named_as_untrained(tmp_path):
    """A generator whose judge FD is above the Copy input row's and whose faces the judge reads at or
    below chance compares nothing: the synthesis table's note says so, naming it and no other."""
    cfg = small_cfg(tmp_path, dbs=("ckplus",))
    write_grid(cfg, dbs=("ckplus",))
    for k in range(cfg["n_folds"]):
        path = paths.synthesis_dir(cfg, "ckplus", "stargan", k) / paths.SCORES
        scores = json.loads(path.read_text())
        scores.update(judge_accuracy=0.1, judge_fid_n240=100.0 + k)          # copy input: 60 + k
        path.write_text(json.dumps(scores))
    report.build_report(cfg)
    tex = (paths.reports_dir(cfg) / "tables" / "synthesis_ckplus.tex").read_text()
    note = tex.split("\\smallskip", 1)[1]
    assert "StarGAN is farther from the target expressions than the unchanged input" in note
    assert "FERSNet" not in note.split("compares nothing")[0]
