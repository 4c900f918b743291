"""bench/demo_quality.py over several runs (seeds, separate result folders, the unseeded layout of
earlier versions) and its fold-by-fold comparison with an earlier grid (--against)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("demo_quality", ROOT / "bench" / "demo_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(model_dir: Path, judge_dir: Path, fer: list[float], synth: list[float], real: list[float]) -> None:
    """Fold files as a finished grid leaves them (fractions, as the CLI writes them)."""
    for k, (f, s, r) in enumerate(zip(fer, synth, real)):
        fold = model_dir / f"fold{k}"
        (fold / "synthesis").mkdir(parents=True)
        (fold / "metrics.json").write_text(json.dumps({"accuracy": f, "code_version": "abc"}))
        (fold / "synthesis" / "scores.json").write_text(json.dumps({"judge_accuracy": s, "code_version": "abc"}))
        (judge_dir / f"fold{k}").mkdir(parents=True)
        (judge_dir / f"fold{k}" / "metrics.json").write_text(json.dumps({"accuracy": r}))


FER = {0: [0.5, 0.6, 0.7, 0.8], 1: [0.7, 0.6, 0.9, 0.6]}
SYNTH = {0: [0.2, 0.3, 0.4, 0.1], 1: [0.4, 0.1, 0.2, 0.3]}
REAL = {0: [0.5, 0.5, 0.6, 0.7], 1: [0.6, 0.4, 0.5, 0.8]}


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    results = tmp_path / "now"
    for seed in (0, 1):
        write_run(results / f"ckplus/fersnet/seed{seed}", results / f"ckplus/judge/seed{seed}",
                  FER[seed], SYNTH[seed], REAL[seed])
    return results


def test_several_seeds_are_averaged_per_fold_and_the_error_is_over_folds(seeded: Path) -> None:
    q = load_bench().main(["--results", str(seeded), "--seed", "0", "1"])["per_database"]["ckplus"]
    fold_means = 100 * (np.array(FER[0]) + np.array(FER[1])) / 2
    assert q["fer"]["folds"] == pytest.approx(fold_means, abs=0.01)
    assert q["fer"]["mean"] == pytest.approx(fold_means.mean(), abs=0.01)
    assert q["fer"]["se"] == pytest.approx(fold_means.std(ddof=1) / 2, abs=0.01)
    assert q["runs_per_fold"] == [2, 2, 2, 2]
    assert [r["judge_on_synthesis"] for r in q["runs"]] == pytest.approx([25.0, 25.0])
    one = load_bench().main(["--results", str(seeded), "--seed", "1"])["per_database"]["ckplus"]
    assert one["fer"]["folds"] == pytest.approx([100 * v for v in FER[1]])


def test_a_folder_of_the_unseeded_layout_is_one_run_and_folders_combine(tmp_path: Path, seeded: Path) -> None:
    old = tmp_path / "old"
    write_run(old / "ckplus/fersnet", old / "ckplus/judge", FER[1], SYNTH[1], REAL[1])
    alone = load_bench().main(["--results", str(old), "--seed", "7"])["per_database"]["ckplus"]
    assert alone["judge_on_real"]["folds"] == pytest.approx([100 * v for v in REAL[1]])
    both = load_bench().main(["--results", str(seeded), str(old)])["per_database"]["ckplus"]
    assert both["fer"]["folds"] == pytest.approx(100 * (np.array(FER[0]) + np.array(FER[1])) / 2)
    assert both["runs_per_fold"] == [2, 2, 2, 2]


def test_against_pairs_folds_and_tests_the_differences(tmp_path: Path, seeded: Path) -> None:
    bench = load_bench()
    earlier = bench.main(["--results", str(seeded), "--seed", "0", "--out", str(tmp_path / "earlier.json")])
    import record                                     # bench/ is on sys.path once the script is loaded
    doc = json.loads((tmp_path / "earlier.json").read_text())
    assert record.problems(doc) == [] and doc["numbers"] == json.loads(json.dumps(earlier))
    report = bench.main(["--results", str(seeded), "--seed", "1", "--against", str(tmp_path / "earlier.json")])
    d_fer = 100 * (np.array(FER[1]) - np.array(FER[0]))
    fer = report["against"]["ckplus"]["fer"]
    assert fer["mean_diff"] == pytest.approx(d_fer.mean(), abs=0.01)
    assert fer["wilcoxon_p"] == pytest.approx(wilcoxon(d_fer).pvalue, abs=1e-4)
    assert (fer["lower_folds"], fer["higher_folds"]) == (1, 2)     # one fold unchanged
    assert report["against"]["all"]["judge_on_synthesis"]["n_folds"] == 4
    same = bench.main(["--results", str(seeded), "--seed", "0", "--against", str(tmp_path / "earlier.json")])
    assert same["against"]["ckplus"]["fer"] == {"mean_diff": 0.0, "n_folds": 4, "wilcoxon_p": None,
                                                "lower_folds": 0, "higher_folds": 0}


def test_a_missing_fold_file_or_seed_is_named(seeded: Path) -> None:
    (seeded / "ckplus/fersnet/seed1/fold2/synthesis/scores.json").unlink()
    with pytest.raises(SystemExit, match=r"seed1/fold2/synthesis/scores.json is missing"):
        load_bench().main(["--results", str(seeded), "--seed", "0", "1"])
    with pytest.raises(SystemExit, match=r"no FERSNet runs of ckplus for seed\(s\) \[5\]"):
        load_bench().main(["--results", str(seeded), "--seed", "5"])
