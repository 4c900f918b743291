"""`fersnet <verb>`: one verb per pipeline step, each a thin call into library code.

Heavy modules (torch, pandas, mlflow) are imported inside the verb that needs them, so
`fersnet --help` and short jobs start fast.
"""
from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import time
from pathlib import Path

from fersnet import config as config_mod
from fersnet import catalog
from fersnet.config import PROFILES
from fersnet.device import CHOICES as DEVICES, may_use_cuda
from fersnet.errors import DiskFull, FersnetError, disk_full


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--profile", choices=PROFILES, help="params profile to use (default: params.yaml's `profile`)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="sets",
                   help="override one params key for this run, e.g. --set train.epochs=300 (repeatable; "
                        "wins over the profile; validated like params.yaml)")


def _db(p, required=True, multi=False):
    if multi:
        p.add_argument("--db", choices=catalog.database_keys(), action="append",
                       help="database (repeatable; default: params `databases`)")
    else:
        p.add_argument("--db", choices=catalog.database_keys(), required=required, help="database key")


FOLD_PART = re.compile(r"(\d+)(?:-(\d+))?")


def _fold_list(text: str) -> list[int]:
    """'3' -> [3]; '0,1,2' -> [0, 1, 2]; '0-9' -> [0..9]."""
    folds: list[int] = []
    for part in text.split(","):
        m = FOLD_PART.fullmatch(part.strip())
        if not m:
            raise argparse.ArgumentTypeError(
                f"{text!r}: {part!r} is not a fold, nor a range of folds; folds are 0-based "
                "non-negative integers, e.g. 3, 0,1,2 or 0-9")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise argparse.ArgumentTypeError(
                f"{text!r}: the range {part.strip()} is empty (it runs downwards); write it low-high, "
                f"e.g. {hi}-{lo}")
        folds.extend(range(lo, hi + 1))
    return folds


def _force(p):
    p.add_argument("--force", action="store_true",
                   help="recompute a finished result even when it was made from other inputs (params, data, "
                        "checkpoints); without it such a result is refused, naming what differs. The old "
                        "result stays in place until the new one is complete")


def _fold(p):
    p.add_argument("--fold", type=_fold_list, required=True,
                   help="test fold(s), 0-based: 3, 0,1,2 or 0-9; several folds run one after another "
                        "in one process (saves the start-up cost per job on small profiles)")


def _seed(p):
    p.add_argument("--seed", type=int, metavar="S",
                   help="run seed of this job, one of params `run_seeds` (default: the first); results go to "
                        "results/<db>/<model>/seed<S>/")


class _Version(argparse.Action):
    """`fersnet --version`: the package version and the code version results record (commit, or the
    sources' hash outside a Git checkout)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the version and the code version, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from fersnet import __version__, provenance
        print(f"fersnet-bench {__version__} (code {provenance.code_label(provenance.code_version())})")
        parser.exit()


def _describe_verbs(sub) -> None:
    """Each verb's one-line help is also the description `fersnet <verb> --help` opens with (where,
    unlike in a help, `%` is not escaped as `%%`)."""
    for action in sub._choices_actions:    # argparse keeps each verb's help here
        text = action.help.replace("%%", "%")
        sub.choices[action.dest].description = text[:1].upper() + text[1:] + "."


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fersnet", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action=_Version)
    sub = ap.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("synth", help="write the synthetic stand-in databases in their native layouts")
    _common(p); _db(p, multi=True)
    p.add_argument("--out", help="output folder (default: params synth.out); one sub-folder per database")

    p = sub.add_parser("preprocess", help="read a database in its native layout, align, crop, assign folds")
    _common(p); _db(p)
    p.add_argument("--root", help="database root in its native layout (default: params data.<db>.root)")
    p.add_argument("--out", help="output folder (default: params preprocess.out/<db>)")

    p = sub.add_parser("train", help="train one model on one fold")
    _common(p); _db(p)
    p.add_argument("--model", choices=catalog.model_keys(), required=True)
    _fold(p); _seed(p)
    p.add_argument("--device", choices=DEVICES, help="override train.device")
    p.add_argument("--out", help="run folder (default: results/<db>/<model>/seed<s>/fold<k>)")
    _force(p)

    p = sub.add_parser("judge", help="train the standard FER model (judge) of one fold on real training images")
    _common(p); _db(p); _fold(p); _seed(p)
    p.add_argument("--device", choices=DEVICES)
    _force(p)

    p = sub.add_parser("score", help="synthesize every test face into every other expression and score it")
    _common(p); _db(p)
    p.add_argument("--model", choices=catalog.generators(), required=True)
    _fold(p); _seed(p)
    p.add_argument("--device", choices=DEVICES)
    _force(p)

    p = sub.add_parser("pool", help="pool synthesis scores (FID/KID) over the folds of each model (one seed)")
    _common(p); _db(p); _seed(p)

    p = sub.add_parser("report", help="compile tables, figures, summary.json and report.pdf from results on disk")
    _common(p)

    p = sub.add_parser("status", help="list every result of the grid as current, stale (params, data, code) "
                                      "or missing, with a summary line; run it before trusting a table")
    _common(p); _db(p, multi=True)
    p.add_argument("--stale-only", action="store_true", help="list only the results that are not current")
    p.add_argument("--json", action="store_true", help="print the states as JSON")

    p = sub.add_parser("compare", help="compare models per database from MLflow: accuracies in %%, mean +- std over "
                                       "folds (and over seeds when there are several)")
    _common(p)
    p.add_argument("--experiment", help="only this experiment (database key)")
    p.add_argument("--filter", dest="tags", action="append", default=[], metavar="TAG=VALUE",
                   help="only runs with this tag value (repeatable), e.g. profile=demo")

    p = sub.add_parser("track", help="MLflow store: --init before the fan-out, --sync to re-log results from disk")
    _common(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--init", action="store_true", help="create the store and experiments")
    g.add_argument("--sync", action="store_true", help="(re)log every finished result on disk")
    g.add_argument("--parent", nargs=2, metavar=("DB", "MODEL"), help="log fold mean/std to the parent run")

    p = sub.add_parser("count-params", help="print parameter counts of every model at a profile's scale")
    _common(p)
    p.add_argument("--write", help="also write the table as Markdown to this file")
    _describe_verbs(sub)
    return ap


# verb -> (module, function); each function takes (cfg, args) and returns a dict or None
VERBS = {
    "synth": ("fersnet.data.synth", "main"),
    "preprocess": ("fersnet.data.preprocess", "main"),
    "train": ("fersnet.training.train", "main"),
    "judge": ("fersnet.metrics.judge", "main"),
    "score": ("fersnet.metrics.score", "main"),
    "pool": ("fersnet.metrics.score", "pool_main"),
    "report": ("fersnet.reports.report", "main"),
    "status": ("fersnet.status", "main"),
    "compare": ("fersnet.tracking.compare", "main"),
    "track": ("fersnet.tracking.mlflow_log", "main"),
    "count-params": ("fersnet.models.registry", "count_params_main"),
}


TRACKED = ("train", "judge", "score")
GPU_VERBS = ("train", "judge", "score")
LOCKED = ("preprocess", "train", "judge", "score")      # one writer per result folder at a time


def _result_folder(cfg: dict, args):
    """The folder a job of a writing verb writes (its writer lock, fersnet.status.writer_lock)."""
    from fersnet import paths
    if getattr(args, "out", None):
        return args.out
    if args.verb == "preprocess":
        return paths.processed_dir(cfg, args.db)
    if args.verb == "judge":
        return paths.judge_dir(cfg, args.db, args.fold)
    if args.verb == "score":
        return paths.synthesis_dir(cfg, args.db, args.model, args.fold)
    return paths.run_dir(cfg, args.db, args.model, args.fold)


def _writes(cfg: dict, args) -> list:
    """The outputs a writing verb replaces: its result folder per fold, each stand-in, the pooled
    scores or the report's folder; none for the verbs that only read (or write MLflow)."""
    from fersnet import paths
    if args.verb == "synth":
        out = Path(getattr(args, "out", None) or cfg["synth"]["out"])
        return [out / db for db in getattr(args, "db", None) or cfg["databases"]]
    if args.verb == "pool":
        return [paths.pooled_file(cfg, args.db, m) for m in catalog.generators(cfg["models"])]
    if args.verb == "report":
        return [paths.reports_dir(cfg)]
    if args.verb not in LOCKED:
        return []
    folds = getattr(args, "fold", None)
    return [_result_folder(cfg, argparse.Namespace(**{**vars(args), "fold": k}))
            for k in (folds if isinstance(folds, list) else [folds])]


def _refuse_other_profile(cfg: dict, args) -> None:
    """Stop before any work when an output the verb would replace was made under another params
    profile (fersnet.status.other_profile); --force does not change that."""
    from fersnet import status
    found = status.other_profile(cfg, _writes(cfg, args))
    if found:
        raise FersnetError(status.other_profile_message(cfg, found))


def _call(fn, cfg: dict, args):
    if args.verb not in LOCKED:
        return fn(cfg, args)
    from fersnet import ownership
    from fersnet.status import writer_lock
    # the folders above a training run, judge or processed data are that step's (as the job marks
    # them); a score's lies in its training run, which the lock never creates or marks
    made_by = None if args.verb == "score" else ownership.step(args.verb)
    with writer_lock(_result_folder(cfg, args), f"fersnet {args.verb}", made_by):
        return fn(cfg, args)


def _track(cfg: dict, args) -> None:
    """Mirror a finished job into MLflow. Never fails the job: the files on disk are the truth."""
    try:
        from fersnet.tracking.folds import log_job
        log_job(cfg, args.verb, args)
    except Exception as e:  # noqa: BLE001 - any tracking failure is only a warning
        print(f"fersnet {args.verb}: warning: MLflow logging failed ({type(e).__name__}: {e}); "
              "the results on disk are complete; re-log them later with `fersnet track --sync`",
              file=sys.stderr)


def _run(fn, cfg: dict, args):
    """Run a verb; a verb given several folds runs once per fold (args.fold is one int inside)."""
    folds = getattr(args, "fold", None)
    if not isinstance(folds, list):
        out = _call(fn, cfg, args)
        if args.verb in TRACKED and cfg["mlflow"]["enabled"]:
            _track(cfg, args)
        return out
    outs = {}
    for k in folds:
        one = argparse.Namespace(**{**vars(args), "fold": k})
        outs[f"fold{k}"] = _call(fn, cfg, one)
        if args.verb in TRACKED and cfg["mlflow"]["enabled"]:
            _track(cfg, one)
    return outs if len(folds) > 1 else outs[f"fold{folds[0]}"]


def _params_databases(argv: list[str] | None) -> None:
    """Register the databases the params file defines (`data.<key>.layout`, fersnet.data.generic)
    before the parser is built, so that `--db` offers them."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--params", default="params.yaml")
    pre.add_argument("--set", action="append", dest="sets")
    known, _ = pre.parse_known_args(argv)
    if Path(known.params).is_file():
        from fersnet.data import generic
        raw = config_mod.read_params(known.params)
        generic.register(config_mod.deep_merge(raw, config_mod.parse_sets(known.sets)))


HELP_FLAGS = {"-h", "--help", "--version"}


def main(argv: list[str] | None = None) -> int:
    try:
        _params_databases(argv)
        parser = build_parser()            # the choices come from the catalogue, plugins included
    except FersnetError as e:
        if not HELP_FLAGS & set(argv if argv is not None else sys.argv[1:]):
            print(f"fersnet: error: {e}", file=sys.stderr)
            return 2
        # help and the version still answer: with the built-in choices, and the problem named
        print(f"fersnet: note: {e} (the choices below leave out what params.yaml adds)", file=sys.stderr)
        parser = build_parser()
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        cfg = config_mod.load(args.params, args.profile, config_mod.parse_sets(getattr(args, "sets", None)))
        if getattr(args, "seed", None) is not None:
            if args.seed < 0:
                raise FersnetError(f"--seed {args.seed}: seeds are non-negative integers")
            cfg = config_mod.with_seed(cfg, args.seed)
        if len(getattr(args, "fold", None) or []) > 1 and getattr(args, "out", None):
            raise FersnetError("--out names one run folder; give a single --fold with it")
        for k in getattr(args, "fold", None) or []:
            if k >= cfg["n_folds"]:
                raise FersnetError(f"--fold {k}: out of range 0..{cfg['n_folds'] - 1} (params `n_folds`)")
        if args.verb in ("train", "score") and catalog.model(args.model).origin:
            from fersnet.models import registry
            registry.check_plugins({**cfg, "models": [args.model]})     # a broken plugin: one line, no job
        if args.verb in GPU_VERBS and may_use_cuda(getattr(args, "device", None)):
            from fersnet import gpu_slots
            gpu_slots.claim_for_job(cfg)        # before torch is imported: one device per job
        module, func = VERBS[args.verb]
        try:
            fn = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError) as e:
            if getattr(e, "name", None) and not str(getattr(e, "name")).startswith("fersnet"):
                raise
            print(f"fersnet {args.verb}: not available in this build ({e})", file=sys.stderr)
            return 3
        _refuse_other_profile(cfg, args)
        out = _run(fn, cfg, args)
    except FersnetError as e:
        print(f"fersnet {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if not disk_full(e):          # the writers name their folder (errors.writing); this is the net
            raise
        folder = Path(e.filename).parent if e.filename else None
        print(f"fersnet {args.verb}: error: {DiskFull(folder, e.strerror or 'no space left on device')}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fersnet {args.verb}: interrupted", file=sys.stderr)
        return 130
    if isinstance(out, dict) and out:
        print(json.dumps(out, indent=2, default=str))
    print(f"fersnet {args.verb}: done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
