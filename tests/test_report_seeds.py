"""The report over folds x seeds: 3 seeds x 2 folds of hand-written result files with known accuracies.

Accuracies (%) of the runs v[fold, seed] (correct out of N_TEST = 40 test images):

    fersnet   fold 0: 90.0  85.0  95.0      no_mtl  fold 0: 85.0  85.0  87.5
              fold 1: 80.0  82.5  92.5              fold 1: 77.5  82.5  (missing)

fersnet: mean over the 6 runs 87.5; fold means 90, 85 -> fold std 3.5355; seed means 85, 83.75,
93.75 -> seed std 5.4486. FERSNet minus w/o MTL, paired by (fold, seed) over the 5 runs both
finished: 5, 0, 7.5, 2.5, 0 pp.
"""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from scipy import stats

from fersnet import config, names, paths
from fersnet.reports import aggregate as agg
from fersnet.reports import html_tables, report, tables
from test_report import N_TEST, compile_standalone, small_cfg, write_fold, write_json, write_judge, write_scores

SEEDS = [0, 1, 2]
CORRECT = {  # (fold, seed) -> correct predictions out of N_TEST
    "fersnet": {(0, 0): 36, (0, 1): 34, (0, 2): 38, (1, 0): 32, (1, 1): 33, (1, 2): 37},
    "no_mtl": {(0, 0): 34, (0, 1): 34, (0, 2): 35, (1, 0): 31, (1, 1): 33},
}
POOLED_FID = {0: 10.0, 1: 12.0, 2: 17.0}      # fersnet's FID pooled over the folds of each seed


def seeds_cfg(tmp, seeds=SEEDS) -> dict:
    cfg = small_cfg(tmp, dbs=("ckplus",))
    cfg["models"], cfg["n_folds"], cfg["run_seeds"] = ["fersnet", "no_mtl"], 2, list(seeds)
    return cfg


def write_seed_grid(cfg: dict) -> None:
    for model, runs in CORRECT.items():
        for (fold, seed), correct in runs.items():
            job = config.with_seed(cfg, seed)
            write_fold(job, "ckplus", model, fold, correct)
            write_scores(job, "ckplus", model, fold, judge=(correct - 4) / N_TEST)
    for seed in SEEDS:
        job = config.with_seed(cfg, seed)
        for fold in range(2):
            write_judge(job, "ckplus", fold, 38)
        write_json(paths.pooled_file(cfg, "ckplus", "fersnet", seed), {"fid_n240": POOLED_FID[seed], "folds": [0, 1]})


@pytest.fixture
def grid(tmp_path):
    cfg = seeds_cfg(tmp_path)
    write_seed_grid(cfg)
    return cfg, agg.collect(cfg)


def test_runs_are_read_per_seed_and_fold_with_missing_runs_counted_per_seed(grid):
    cfg, col = grid
    assert len(col.folds) == 2 * 3 * 2                       # models x seeds x folds, every expected run
    missing = col.folds[col.folds.status != "ok"]
    assert missing[["model", "seed", "fold"]].values.tolist() == [["no_mtl", 2, 1]]
    assert set(col.judges.seed) == set(SEEDS) and set(col.synthesis.seed) == set(SEEDS)
    assert sorted(col.pooled) == [("ckplus", "fersnet", s) for s in SEEDS]
    assert agg.run_values(col.folds, "ckplus", "fersnet")[(1, 2)] == pytest.approx(92.5)


def test_mean_fold_spread_and_seed_spread_equal_the_hand_computed_values(grid):
    cfg, col = grid
    s = agg.accuracy_stats(col.folds, "ckplus", "fersnet")
    assert s["mean"] == pytest.approx(87.5)
    assert s["std"] == pytest.approx(math.sqrt(12.5))              # folds: 90, 85
    assert s["seed_std"] == pytest.approx(math.sqrt(29.6875))      # seeds: 85, 83.75, 93.75
    assert (s["n_folds"], s["n_seeds"], s["n_runs"]) == (2, 3, 6)
    assert s["per_seed"] == {0: pytest.approx(85.0), 1: pytest.approx(83.75), 2: pytest.approx(93.75)}
    assert agg.fold_values(col.folds, "ckplus", "fersnet") == {0: pytest.approx(90.0), 1: pytest.approx(85.0)}
    # w/o MTL lacks seed 2 of fold 1: fold 1's mean is over its two seeds, seed 2's over its one fold
    m = agg.accuracy_stats(col.folds, "ckplus", "no_mtl")
    assert m["mean"] == pytest.approx((85 + 85 + 87.5 + 77.5 + 82.5) / 5)
    assert m["std"] == pytest.approx(np.std([(85 + 85 + 87.5) / 3, (77.5 + 82.5) / 2], ddof=1))
    assert m["seed_std"] == pytest.approx(np.std([81.25, 83.75, 87.5], ddof=1))
    assert m["n_runs"] == 5


def test_one_seed_has_no_seed_spread_never_zero(tmp_path):
    cfg = seeds_cfg(tmp_path, seeds=[0])
    write_seed_grid(cfg)
    s = agg.accuracy_stats(agg.collect(cfg).folds, "ckplus", "fersnet")
    assert s["seed_std"] is None and s["n_seeds"] == 1
    assert s["mean"] == pytest.approx(85.0) and s["std"] == pytest.approx(np.std([90.0, 80.0], ddof=1))


def test_paired_tests_pair_runs_by_fold_and_seed(grid):
    cfg, col = grid
    t = agg.paired_tests(agg.run_values(col.folds, "ckplus", "fersnet"), agg.run_values(col.folds, "ckplus", "no_mtl"))
    d = np.array([5.0, 0.0, 7.5, 2.5, 0.0])            # (0,0) (0,1) (0,2) (1,0) (1,1); (1,2) has no partner
    assert t["n_pairs"] == 5
    assert t["mean_diff"] == pytest.approx(3.0)
    assert t["p_wilcoxon"] == pytest.approx(2 / 2 ** 3)     # 3 non-zero differences, all positive
    t_stat = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert t["p_ttest"] == pytest.approx(2 * stats.t.sf(t_stat, df=len(d) - 1))
    # the ablation table and summary.json use the same pairing
    _, tests = tables.ablation(cfg, col)
    assert tests[("ckplus", "no_mtl")]["p_ttest"] == pytest.approx(t["p_ttest"])
    summary = report.build_summary(cfg, col, tests, {})
    assert summary["measured"]["ckplus"]["no_mtl"]["n_pairs_vs_fersnet"] == 5
    assert summary["measured"]["ckplus"]["no_mtl"]["mean_diff_vs_fersnet"] == pytest.approx(-3.0)


def test_tables_show_the_seed_spread_beside_the_fold_spread_only_with_two_or_more_seeds(grid, tmp_path):
    cfg, col = grid
    tex = tables.fer_accuracy(cfg, col)
    row = next(ln for ln in tex.splitlines() if f"& {names.MODEL['fersnet']} &" in ln)
    # mean over runs +- fold spread, and below it the seed spread in brackets
    assert tables.stacked(f"87.50 $\\pm$ {math.sqrt(12.5):.2f}", f"[{math.sqrt(29.6875):.2f}]") in row
    no_mtl = next(ln for ln in tex.splitlines() if f"& {names.MODEL['no_mtl']} &" in ln)
    assert "(5/6)" in no_mtl
    page = html_tables.table_page(tex, "fer_accuracy")
    assert f"<b>87.50 ± {math.sqrt(12.5):.2f}<br>[{math.sqrt(29.6875):.2f}]</b>" in page
    assert "seed spread" in tex and "3 training seeds" in tex and "2 subject-independent test folds" in tex
    ablation, _ = tables.ablation(cfg, col)
    assert "paired by (fold, seed)" in ablation and "With 6 runs" in ablation

    one = seeds_cfg(tmp_path / "one", seeds=[0])
    write_seed_grid(one)
    single = tables.fer_accuracy(one, agg.collect(one))
    row = next(ln for ln in single.splitlines() if f"& {names.MODEL['fersnet']} &" in ln)
    assert f"85.00 $\\pm$ {np.std([90.0, 80.0], ddof=1):.2f}" in row and "[" not in row and "tabular" not in row
    assert "seed spread" not in single and "seed" not in tables.ablation(one, agg.collect(one))[0]


def test_synthesis_table_averages_the_pooled_fid_over_seeds_with_its_seed_spread(grid, tmp_path):
    cfg, col = grid
    tex, numbers = tables.synthesis(cfg, col, "ckplus")
    row = next(ln for ln in tex.splitlines() if ln.startswith(names.GENERATOR["fersnet"] + " &"))
    spread = np.std(list(POOLED_FID.values()), ddof=1)
    assert tables.stacked("13.00", f"[{spread:.2f}]") in row
    assert numbers["fersnet"]["fid"] == pytest.approx(13.0)
    assert numbers["fersnet"]["fid_seed_std"] == pytest.approx(spread)
    judge = {k: 100 * (c - 4) / N_TEST for k, c in CORRECT["fersnet"].items()}
    assert numbers["fersnet"]["judge_accuracy_mean"] == pytest.approx(np.mean(list(judge.values())))
    assert numbers["fersnet"]["judge_accuracy_seed_std"] == pytest.approx(math.sqrt(29.6875))
    assert "averaged over the seeds" in tex
    if shutil.which("pdflatex"):
        for name, table in (("syn", tex), ("acc", tables.fer_accuracy(cfg, col)), ("abl", tables.ablation(cfg, col)[0]),
                            ("done", tables.completeness(cfg, col))):
            (tmp_path / f"{name}.tex").write_text(table)
            run = compile_standalone(tmp_path / f"{name}.tex", tmp_path)
            assert run.returncode == 0, run.stdout[-2000:]


def test_summary_and_plots_cover_every_seed(grid, tmp_path):
    cfg, col = grid
    _, tests = tables.ablation(cfg, col)
    summary = json.loads(json.dumps(report._json_safe(report.build_summary(cfg, col, tests, {}))))
    assert summary["seeds"] == SEEDS
    fer = summary["measured"]["ckplus"]["fersnet"]
    assert fer["seeds"] == SEEDS and fer["n_folds"] == 2 and fer["n_runs"] == 6
    assert fer["accuracy_mean"] == pytest.approx(87.5) and fer["accuracy_std"] == pytest.approx(math.sqrt(12.5))
    assert fer["seed_std"] == pytest.approx(math.sqrt(29.6875))
    assert fer["accuracy_per_seed"] == {"seed0": pytest.approx(85.0), "seed1": pytest.approx(83.75),
                                        "seed2": pytest.approx(93.75)}
    # the confusion data and the training curves hold every run of every seed
    assert len(agg.prediction_pairs(cfg, col.folds, "ckplus")) == 6 * N_TEST
    history = agg.read_history(cfg, "ckplus", "fersnet")
    assert sorted(set(zip(history.fold, history.seed))) == sorted(CORRECT["fersnet"])
    assert agg.summed_confusion(col.folds, "ckplus", "fersnet")[2] == 6
    assert "6/6 runs" in tables.confusion(cfg, col, "ckplus")
