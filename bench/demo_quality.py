"""The demo grid's quality per database, read from a finished run's results: FERSNet's FER accuracy,
the judge's accuracy on FERSNet's synthesized faces (the share it reads as the target expression)
and the judge's accuracy on the real test faces, each as the mean over folds with the fold standard
deviation (ddof=1) and the standard error (sd / sqrt(n)), in percent.

With `--before DB=FER,SYNTH` (the figures of an earlier run), each mean is compared with the earlier
figure minus one standard error: the check a speed change must pass ("quality does not drop").

    .venv/bin/python bench/demo_quality.py --results results --seed 0 \
        --before ckplus=63.1,38.9 --before oulu=64.7,39.1 --before mmi=76.1,25.4 \
        --out bench/results/demo_quality_cpu.json

Several runs (training seeds, or result folders of separate runs) are read together: each fold's
value is the mean over the runs that have it, so the standard error is over folds of seed means.
`--results` and `--seed` take several values; every (folder, seed) pair found is a run. A folder
written before the seed level existed (results/<db>/fersnet/fold<k>) is one run whatever `--seed`.

`--against EARLIER.json` (this script's output for another grid over the same folds) pairs the two
fold by fold: per database and over all of them, the mean difference (this minus earlier) and the
two-sided Wilcoxon signed-rank p over folds (scipy), for FER and the judge on synthesis:

    .venv/bin/python bench/demo_quality.py --results /runs/before --out before.json
    .venv/bin/python bench/demo_quality.py --results results --seed 0 1 2 --against before.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from fersnet.metrics.fold_stats import group_means, mean_std  # noqa: E402

QUALITY = ("fer", "judge_on_synthesis", "judge_on_real")


def read(path: Path, key: str, versions: set) -> float:
    """100 x `key` of the JSON file at `path`; the code version that wrote it goes into `versions`."""
    try:
        data = json.loads(path.read_text())
        value = data[key]
    except FileNotFoundError:
        raise SystemExit(f"demo_quality: {path} is missing: has the grid finished?")
    except (json.JSONDecodeError, KeyError) as e:
        raise SystemExit(f"demo_quality: {path} has no readable `{key}` ({e})")
    if value is None:
        raise SystemExit(f"demo_quality: `{key}` is null in {path}")
    versions.add(data.get("code_version"))
    return 100.0 * float(value)


def summary(values: list[float], before: float | None) -> dict:
    s = mean_std(values)
    se = s["std"] / math.sqrt(s["n"]) if s["n"] >= 2 else math.nan
    out = {"mean": round(s["mean"], 2), "fold_sd": round(s["std"], 2), "se": round(se, 2), "n_folds": s["n"],
           "before": before, "at_least_before_minus_se": None, "folds": [round(v, 2) for v in values]}
    if before is not None and math.isfinite(se):
        out["at_least_before_minus_se"] = bool(s["mean"] >= before - se)
    return out


def run_folders(results: list[Path], db: str, seeds: list[int]) -> list[Path]:
    """The FERSNet seed folders of `db`: every (results folder, seed) that exists, and a folder written
    before the seed level existed (<results>/<db>/fersnet/fold<k>) as one run."""
    out = []
    for root in results:
        model = root / db / "fersnet"
        found = [model / f"seed{s}" for s in seeds if (model / f"seed{s}").is_dir()]
        if not found and any(model.glob("fold[0-9]*")):
            found = [model]
        out += found
    return out


def judge_folder(run: Path) -> Path:
    """The judge's folder beside a FERSNet seed folder (or beside an unseeded one)."""
    if run.name.startswith("seed"):
        return run.parent.parent / "judge" / run.name
    return run.parent / "judge"


def database_quality(results: list[Path], db: str, seeds: list[int], before: tuple[float, float] | None,
                     versions: set) -> dict:
    runs = run_folders(results, db, seeds)
    if not runs:
        raise SystemExit(f"demo_quality: no FERSNet runs of {db} for seed(s) {seeds} under "
                         + ", ".join(str(r) for r in results))
    values: dict[str, dict] = {key: {} for key in QUALITY}      # key -> {(fold, run index): value}
    for i, run in enumerate(runs):
        for k in sorted(int(p.name[4:]) for p in run.glob("fold[0-9]*")):
            fold = run / f"fold{k}"
            values["fer"][k, i] = read(fold / "metrics.json", "accuracy", versions)
            values["judge_on_synthesis"][k, i] = read(fold / "synthesis" / "scores.json", "judge_accuracy", versions)
            values["judge_on_real"][k, i] = read(judge_folder(run) / f"fold{k}" / "metrics.json", "accuracy", versions)
    fold_means = {key: group_means(v, 0) for key, v in values.items()}
    run_means = {key: group_means(v, 1) for key, v in values.items()}
    folds = list(fold_means["fer"])
    runs_of = Counter(k for k, _ in values["fer"])
    per_run = [{"folder": str(run), "n_folds": sum(1 for _, j in values["fer"] if j == i),
                **{key: round(run_means[key].get(i, math.nan), 2) for key in QUALITY}}
               for i, run in enumerate(runs)]
    return {"fer": summary(list(fold_means["fer"].values()), before[0] if before else None),
            "judge_on_synthesis": summary(list(fold_means["judge_on_synthesis"].values()), before[1] if before else None),
            "judge_on_real": summary(list(fold_means["judge_on_real"].values()), None),
            "fold_ids": folds, "runs_per_fold": [runs_of[k] for k in folds], "runs": per_run}


PAIRED = ("fer", "judge_on_synthesis")


def paired(this: dict, earlier: dict) -> dict:
    """Fold-by-fold differences (this minus earlier) per database and pooled over databases: mean
    difference and the two-sided Wilcoxon signed-rank p over the folds both have."""
    from scipy.stats import wilcoxon

    def compare(a: list[float], b: list[float]) -> dict:
        d = [x - y for x, y in zip(a, b)]
        p = float(wilcoxon(d).pvalue) if len(d) >= 2 and any(d) else None
        return {"mean_diff": round(sum(d) / len(d), 2), "n_folds": len(d), "wilcoxon_p": None if p is None else round(p, 4),
                "lower_folds": sum(x < 0 for x in d), "higher_folds": sum(x > 0 for x in d)}

    out, pooled = {}, {m: ([], []) for m in PAIRED}
    for db, q in this.items():
        e = earlier.get(db)
        if e is None:
            continue
        ids_e = e.get("fold_ids") or list(range(len(e["fer"]["folds"])))
        common = [k for k in q["fold_ids"] if k in ids_e]
        out[db] = {}
        for m in PAIRED:
            a = [q[m]["folds"][q["fold_ids"].index(k)] for k in common]
            b = [e[m]["folds"][ids_e.index(k)] for k in common]
            out[db][m] = compare(a, b)
            pooled[m][0].extend(a)
            pooled[m][1].extend(b)
    if not out:
        raise SystemExit("demo_quality: --against shares no database with this run")
    out["all"] = {m: compare(*pooled[m]) for m in PAIRED}
    return out


def parse_before(items: list[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for item in items:
        db, _, figures = item.partition("=")
        try:
            fer, synth = (float(x) for x in figures.split(","))
        except ValueError:
            raise SystemExit(f"demo_quality: --before {item!r}: expected DB=FER,SYNTH (percent), e.g. ckplus=63.1,38.9")
        out[db] = (fer, synth)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, nargs="+", default=[ROOT / "results"],
                    help="the run's results folder (several: their runs are averaged per fold)")
    ap.add_argument("--db", nargs="+", help="databases (default: every folder of --results holding fersnet runs)")
    ap.add_argument("--seed", type=int, nargs="+", default=[0],
                    help="training seed(s); several are averaged per fold (default 0)")
    ap.add_argument("--before", action="append", default=[], metavar="DB=FER,SYNTH",
                    help="an earlier run's FER and judge-on-synthesis means (percent) to compare with")
    ap.add_argument("--against", type=Path, metavar="EARLIER.json",
                    help="this script's JSON for another grid: fold-by-fold differences and Wilcoxon p")
    ap.add_argument("--out", type=Path, help="write the JSON here (with the code versions that wrote the files read)")
    args = ap.parse_args(argv)
    before = parse_before(args.before)
    dbs = args.db or sorted({p.parent.name for root in args.results for p in root.glob("*/fersnet")})
    if not dbs:
        raise SystemExit("demo_quality: no <db>/fersnet folders under " + ", ".join(map(str, args.results)))
    versions: set = set()
    per_db = {db: database_quality(args.results, db, args.seed, before.get(db), versions) for db in dbs}
    report = {"bench": "demo grid quality per database (FERSNet FER, judge on its synthesis and on real faces)",
              "results": [str(r) for r in args.results], "seeds": args.seed,
              "code_versions": sorted(str(v) for v in versions),   # of the code that wrote the files read
              "per_database": per_db}
    for db, q in report["per_database"].items():
        print(f"{db:8s} FER {q['fer']['mean']:5.1f} ± {q['fer']['se']:.1f}   judge on synthesis "
              f"{q['judge_on_synthesis']['mean']:5.1f} ± {q['judge_on_synthesis']['se']:.1f}   judge on real "
              f"{q['judge_on_real']['mean']:5.1f} ± {q['judge_on_real']['se']:.1f}   (mean ± SE over "
              f"{q['fer']['n_folds']} folds, %)")
    if args.against:
        try:
            from record import numbers
            earlier = numbers(json.loads(args.against.read_text()))["per_database"]
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise SystemExit(f"demo_quality: --against {args.against} is not this script's JSON ({e})")
        comparison = paired(per_db, earlier)
        report["against"] = {"file": str(args.against), **comparison}
        for db, d in comparison.items():
            print(f"{db:8s} minus {args.against.name}: " + "   ".join(
                f"{m} {d[m]['mean_diff']:+.1f} (p {d[m]['wilcoxon_p']}, lower on {d[m]['lower_folds']} of {d[m]['n_folds']})"
                for m in PAIRED))
    if args.out:
        from record import save
        save(args.out, "bench/demo_quality.py: FERSNet's FER accuracy and the judge's accuracy on its synthesis "
                       "and on the real faces, per database, over the folds of finished grids", report)
    return report


if __name__ == "__main__":
    main()
