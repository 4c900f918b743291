"""Run one step (train, judge or score) for every fold of a database/model in a single process.

Used when params `orchestration.batch_folds` is true: the per-process start-up (Python, torch, data
and model set-up, ~6 s on a 2-core CPU) is paid once per (db, model) instead of once per fold.
Calls the same library entry points as the CLI verbs (docs/architecture.md); every job seeds itself
from (seed, fold), so the results equal those of one process per fold.
"""
import argparse
import sys
import time

from fersnet import config as fconfig
from fersnet.errors import FersnetError


def run_fold(cfg, verb, db, model, fold):
    if verb == "train":
        from fersnet.training.train import train_job
        return train_job(cfg, db, model, fold)
    if verb == "judge":
        from fersnet.metrics.judge import train_judge
        return train_judge(cfg, db, fold)
    from fersnet.metrics.score import score_job
    return score_job(cfg, db, model, fold)


def track_fold(cfg, verb, db, model, fold):
    """Mirror the fold into MLflow like the CLI does; a failure is only a warning."""
    if not (cfg["mlflow"]["enabled"] and cfg["mlflow"]["log_jobs"]):
        return
    from argparse import Namespace

    from fersnet.tracking.mlflow_log import log_job
    try:
        log_job(cfg, verb, Namespace(db=db, model=model, fold=fold))
    except Exception as e:  # noqa: BLE001 - results on disk are the truth
        print(f"fersnet {verb}: warning: MLflow logging failed ({type(e).__name__}: {e}); "
              "re-log later with `fersnet track --sync`", file=sys.stderr)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("verb", choices=("train", "judge", "score"))
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile")
    ap.add_argument("--db", required=True)
    ap.add_argument("--model", default="judge")
    ap.add_argument("--folds", required=True, help="comma-separated fold numbers")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = fconfig.load(args.params, args.profile)
    except FersnetError as e:
        print(f"fersnet {args.verb}: error: {e}", file=sys.stderr)
        return 2
    for fold in (int(k) for k in args.folds.split(",")):
        print(f"fersnet {args.verb}: {args.db} {args.model} fold {fold}", flush=True)
        t0 = time.perf_counter()
        try:
            result = run_fold(cfg, args.verb, args.db, args.model, fold) or {}
        except FersnetError as e:
            print(f"fersnet {args.verb}: error: {args.db} {args.model} fold {fold}: {e}", file=sys.stderr)
            return 2
        shown = {k: result.get(k) for k in ("accuracy", "judge_accuracy") if k in result}
        print(f"fersnet {args.verb}: fold {fold} done in {time.perf_counter() - t0:.1f}s {shown}", flush=True)
        track_fold(cfg, args.verb, args.db, args.model, fold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
