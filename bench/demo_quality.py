"""The demo grid's quality per database, read from a finished run's results: FERSNet's FER accuracy,
the judge's accuracy on FERSNet's synthesized faces (the share it reads as the target expression)
and the judge's accuracy on the real test faces, each as the mean over folds with the fold standard
deviation (ddof=1) and the standard error (sd / sqrt(n)), in percent.

With `--before DB=FER,SYNTH` (the figures of an earlier run), each mean is compared with the earlier
figure minus one standard error: the check a speed change must pass ("quality does not drop").

    .venv/bin/python bench/demo_quality.py --results results --seed 0 \
        --before ckplus=63.1,38.9 --before oulu=64.7,39.1 --before mmi=76.1,25.4 \
        --out bench/results/demo_quality_cpu.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from fersnet.metrics.fold_stats import mean_std  # noqa: E402


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


def database_quality(results: Path, db: str, seed: int, before: tuple[float, float] | None, versions: set) -> dict:
    folds = sorted(int(p.name[4:]) for p in (results / db / "fersnet" / f"seed{seed}").glob("fold[0-9]*"))
    if not folds:
        raise SystemExit(f"demo_quality: no FERSNet folds under {results / db / 'fersnet' / f'seed{seed}'}")
    fer, synth, real = [], [], []
    for k in folds:
        run = results / db / "fersnet" / f"seed{seed}" / f"fold{k}"
        fer.append(read(run / "metrics.json", "accuracy", versions))
        synth.append(read(run / "synthesis" / "scores.json", "judge_accuracy", versions))
        real.append(read(results / db / "judge" / f"seed{seed}" / f"fold{k}" / "metrics.json", "accuracy", versions))
    return {"fer": summary(fer, before[0] if before else None),
            "judge_on_synthesis": summary(synth, before[1] if before else None),
            "judge_on_real": summary(real, None)}


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
    ap.add_argument("--results", type=Path, default=ROOT / "results", help="the run's results folder")
    ap.add_argument("--db", nargs="+", help="databases (default: every folder of --results holding fersnet runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--before", action="append", default=[], metavar="DB=FER,SYNTH",
                    help="an earlier run's FER and judge-on-synthesis means (percent) to compare with")
    ap.add_argument("--out", type=Path, help="write the JSON here (with the code versions that wrote the files read)")
    args = ap.parse_args(argv)
    before = parse_before(args.before)
    dbs = args.db or sorted(p.parent.name for p in args.results.glob("*/fersnet"))
    if not dbs:
        raise SystemExit(f"demo_quality: no <db>/fersnet folders under {args.results}")
    versions: set = set()
    per_db = {db: database_quality(args.results, db, args.seed, before.get(db), versions) for db in dbs}
    report = {"bench": "demo grid quality per database (FERSNet FER, judge on its synthesis and on real faces)",
              "results": str(args.results), "seed": args.seed,
              "code_versions": sorted(str(v) for v in versions),   # of the code that wrote the files read
              "per_database": per_db}
    for db, q in report["per_database"].items():
        print(f"{db:8s} FER {q['fer']['mean']:5.1f} ± {q['fer']['se']:.1f}   judge on synthesis "
              f"{q['judge_on_synthesis']['mean']:5.1f} ± {q['judge_on_synthesis']['se']:.1f}   judge on real "
              f"{q['judge_on_real']['mean']:5.1f} ± {q['judge_on_real']['se']:.1f}   (mean ± SE over "
              f"{q['fer']['n_folds']} folds, %)")
    if args.out:
        from train_step import save
        save(report, args.out)
    return report


if __name__ == "__main__":
    main()
