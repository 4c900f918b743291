"""How fast a generator learns to take the target: judge accuracy of its synthesis, epoch by epoch.

Trains one (database, model, fold) job into a scratch folder with the given overrides and,
every `--every` epochs, renders each test face into every other expression and asks that fold's
judge (trained beforehand by `fersnet judge`) what it sees. Per checkpoint it records:
`judge` (share read as the target; chance = 1 / classes), `copy` (share read as the source's own
expression; a generator that returns its input scores ~1 here and ~0 on `judge`) and `change`
(mean absolute difference from the input, grey levels). The table in docs/lab-notebook.md ("Demo
synthesis") was measured this way.

    .venv/bin/python bench/synthesis_curve.py --db ckplus --fold 1 --every 3 \
        --set train.lambda_expr=0.0 --out bench/results/curve_ckplus_no_expr.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fersnet import catalog, config, paths  # noqa: E402
from fersnet.errors import FersnetError  # noqa: E402


def curve(cfg: dict, db: str, model: str, fold: int, every: int, judge_dir: Path, scratch: Path,
          grid: Path | None = None, log=print) -> list[dict]:
    """Train into `scratch` and score the synthesis every `every` epochs (and after the last)."""
    import torch

    from fersnet.data.dataset import load_processed
    from fersnet.metrics.common import centre_crop
    from fersnet.metrics.judge import load_judge, predict
    from fersnet.metrics.score import check_judge_fits, synthesis_plan, synthesize, write_grid
    from fersnet.training.loop import Hooks
    from fersnet.training.train import train_epochs, train_job

    if model not in catalog.generators():
        raise FersnetError(f"--model {model!r} is not a generator; allowed: {', '.join(catalog.generators())}")
    if not (judge_dir / paths.METRICS).is_file():
        raise FersnetError(f"{judge_dir}: no trained judge; run `fersnet judge --db {db} --fold {fold}` first")
    data = load_processed(cfg, db)
    train_rows, test_rows = data.split(fold)
    crop = int(cfg["train"]["crop"])
    faces = centre_crop(data.images[test_rows], crop)
    labels = data.meta["label"].to_numpy()[test_rows].astype(int)
    judge = load_judge(judge_dir, "cpu")
    check_judge_fits(judge, judge_dir, crop, len(data.classes))
    sources, targets = synthesis_plan(labels, len(data.classes))
    last = train_epochs(cfg["train"], len(train_rows))
    rows: list[dict] = []
    t0 = time.perf_counter()

    def on_epoch(epoch: int, task) -> None:
        if epoch % every and epoch != last:
            return
        was = task.training
        task.eval()
        synth = synthesize(task.synthesize, faces, sources, targets)
        task.train(was)
        pred = predict(judge, synth).argmax(1)
        row = {"epoch": epoch, "judge": round(float((pred == targets).mean()), 4),
               "copy": round(float((pred == labels[sources]).mean()), 4),
               "change": round(float(np.abs(synth.astype(np.float32) - faces[sources]).mean()), 3),
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        log(json.dumps(row))
        if grid is not None and epoch == last:
            write_grid(grid, faces, labels, synth, sources, targets, list(data.classes),
                       f"{db} / {model} / fold {fold}, epoch {epoch}")

    train_job(cfg, db, model, fold, out=scratch, hooks=Hooks(on_epoch=on_epoch))
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile")
    ap.add_argument("--db", default="ckplus")
    ap.add_argument("--model", default="fersnet")
    ap.add_argument("--fold", type=int, default=1)
    ap.add_argument("--every", type=int, default=3, help="score every N epochs (and after the last)")
    ap.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE", help="params override (repeatable)")
    ap.add_argument("--grid", type=Path, help="write the last epoch's sources x targets grid here (PNG)")
    ap.add_argument("--out", type=Path, help="JSON file for the curve")
    a = ap.parse_args(argv)
    try:
        cfg = config.load(a.params, a.profile, config.parse_sets(a.sets))
        judge_dir = paths.judge_dir(cfg, a.db, a.fold)
        with tempfile.TemporaryDirectory(prefix="fersnet-curve-") as tmp:
            rows = curve(cfg, a.db, a.model, a.fold, max(1, a.every), judge_dir, Path(tmp), a.grid)
    except FersnetError as e:
        sys.exit(f"error: {e}")
    result = {"bench": "synthesis_curve", "db": a.db, "model": a.model, "fold": a.fold,
              "profile": cfg["profile"], "sets": a.sets or [], "judge": str(judge_dir), "curve": rows}
    if a.out:
        from record import save
        save(a.out, f"bench/synthesis_curve.py: the judge's reading of {a.model}'s synthesis on {a.db} fold "
                    f"{a.fold} every {a.every} epochs", result)
    return result


if __name__ == "__main__":
    main()
