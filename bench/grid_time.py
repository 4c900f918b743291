"""Today's training path vs a reference commit, end to end: one fold per model as its own
`fersnet train` process, A (the reference) and B (this checkout) alternated, on one database.

The reference is the project at `--ref` (default 7e1fff4, before the step levers), extracted with
`git archive` into a scratch folder and run with the same Python environment
(PYTHONPATH=<that folder>, its own params.yaml); B is this checkout. Each side writes its own
synthetic database and preprocessed data into the scratch folder (so that a change of the data
layout on either side cannot mix them), then trains fold `--fold` of each model with `--force`,
A and B in turn (A B, then B A on the next model or repeat).

Per run: wall seconds and CPU seconds (user + system, children included) of the whole process,
start-up included, and the training loop's wall seconds (the `seconds` column of history.csv,
summed over epochs). The grid estimate scales the grid's measured training job time per model
(the demo grid of 2026-12-02 in docs/lab-notebook.md, `GRID_JOB_S`) by that model's B/A ratio
(`--ratio`, default CPU seconds: on a shared machine wall time measures the neighbours too);
models not timed here (fes_da) count at ratio 1.

    .venv/bin/python bench/grid_time.py --out bench/results/grid_time_cpu_demo.json
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from record import save  # noqa: E402

from fersnet import catalog  # noqa: E402

MODELS = tuple(catalog.generators())
# training job seconds of the demo grid (3 databases x 10 folds each), docs/lab-notebook.md, 2026-12-02:
# per database fersnet ~570-580, no_mtl ~365, no_convflu ~340, stargan ~180-200, fes_da ~27-41
GRID_JOB_S = {"fersnet": 3 * 575, "no_mtl": 3 * 365, "no_convflu": 3 * 340, "stargan": 3 * 190, "fes_da": 3 * 34}


def extract(ref: str, dest: Path) -> str:
    sha = subprocess.run(["git", "rev-parse", "--short=12", ref], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    tar = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(dest, filter="data")
    return sha


class Side:
    """One code base (root) with its own params file and scratch data/results."""

    def __init__(self, name: str, root: Path, scratch: Path, db: str, profile: str, extra_sets: list[str]):
        self.name, self.root, self.db, self.profile = name, root, db, profile
        self.work = scratch / name
        self.sets = [f"synth.out={self.work}/synthetic", f"data.{db}.root={self.work}/synthetic/{db}",
                     f"preprocess.out={self.work}/processed", f"paths.results={self.work}/results",
                     "mlflow.enabled=false", *extra_sets]

    def cmd(self, verb: str, *args: str) -> list[str]:
        cmd = [sys.executable, "-m", "fersnet", verb, "--params", str(self.root / "params.yaml"),
               "--profile", self.profile, *args]
        for s in self.sets:
            cmd += ["--set", s]
        return cmd

    def run(self, cmd: list[str]) -> tuple[float, float]:
        """(wall seconds, CPU seconds: user + system of the process and its children)."""
        env = dict(os.environ, PYTHONPATH=str(self.root))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=self.root, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(cmd[:6])} failed:\n{p.stderr[-3000:]}")
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def prepare(self) -> None:
        self.run(self.cmd("synth", "--db", self.db))
        self.run(self.cmd("preprocess", "--db", self.db))

    def train(self, model: str, fold: int, repeat: int = 0) -> dict:
        # a folder per repeat: a finished run of the same inputs is reused, even with --force
        out = self.work / "runs" / f"{model}_fold{fold}_repeat{repeat}"
        wall, cpu = self.run(self.cmd("train", "--db", self.db, "--model", model, "--fold", str(fold),
                                 "--out", str(out), "--force"))
        with open(out / "history.csv") as f:
            rows = list(csv.DictReader(f))
        return {"wall_s": wall, "cpu_s": cpu, "loop_s": sum(float(r["seconds"]) for r in rows), "epochs": len(rows),
                "final": {k: rows[-1][k] for k in rows[-1] if k.endswith("loss") or "acc" in k}}


def measure(a) -> tuple[list[dict], str]:
    """Prepare both sides' data, then train each model's fold on A and B in turn."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="grid-time-") as tmp:
        scratch = Path(tmp)
        sha = extract(a.ref, scratch / "ref")
        sides = {"A": Side("A", scratch / "ref", scratch, a.db, a.profile, []),
                 "B": Side("B", ROOT, scratch, a.db, a.profile, a.b_sets)}
        for s in sides.values():
            s.prepare()
        k = 0
        for model in a.models:
            for rep in range(a.repeats):
                order = ("A", "B") if k % 2 == 0 else ("B", "A")
                k += 1
                for side in order:
                    r = {"model": model, "side": side, "repeat": rep, **sides[side].train(model, a.fold, rep)}
                    print(json.dumps(r), flush=True)
                    runs.append(r)
    return runs, sha


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="7e1fff4")
    ap.add_argument("--db", default="ckplus")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--repeats", type=int, default=1, help="A/B pairs per model")
    ap.add_argument("--set", dest="b_sets", action="append", default=[], metavar="KEY=VALUE",
                    help="extra params for B only (e.g. train.compile=yes)")
    ap.add_argument("--ratio", default="cpu_ratio_b_over_a",
                    choices=("cpu_ratio_b_over_a", "loop_ratio_b_over_a", "wall_ratio_b_over_a"),
                    help="which ratio scales the grid's job times: CPU seconds of the whole process (default: "
                         "robust on a busy machine, and what a job costs when it has its core), loop or wall seconds")
    ap.add_argument("--runs-from", metavar="FILE",
                    help="summarise the per-run JSON lines a previous (perhaps interrupted) call printed, "
                         "without running anything; models with both sides measured are used")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.runs_from:
        runs = [json.loads(line) for line in Path(a.runs_from).read_text().splitlines() if line.startswith("{")]
        sha = subprocess.run(["git", "rev-parse", "--short=12", a.ref], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    else:
        runs, sha = measure(a)
    done = [m for m in a.models if {r["side"] for r in runs if r["model"] == m} == {"A", "B"}]
    per_model = {}
    for model in done:
        pick = {s: [r for r in runs if r["model"] == model and r["side"] == s] for s in "AB"}
        med = {s: {k: statistics.median(r[k] for r in pick[s]) for k in ("wall_s", "cpu_s", "loop_s")} for s in "AB"}
        per_model[model] = {"A": med["A"], "B": med["B"],
                            "wall_ratio_b_over_a": med["B"]["wall_s"] / med["A"]["wall_s"],
                            "cpu_ratio_b_over_a": med["B"]["cpu_s"] / med["A"]["cpu_s"],
                            "loop_ratio_b_over_a": med["B"]["loop_s"] / med["A"]["loop_s"]}
    today = dict(GRID_JOB_S)
    new = {m: t * per_model[m][a.ratio] if m in per_model else t for m, t in today.items()}
    estimate = {"today_training_job_s": today, "estimated_training_job_s": new,
                "today_total_s": sum(today.values()), "estimated_total_s": sum(new.values()),
                "ratio": sum(new.values()) / sum(today.values()), "models_measured": done,
                "how": "grid training job seconds per model (docs/lab-notebook.md, demo grid 2026-12-02) x that "
                       f"model's B/A ratio ({a.ratio}) for one fold measured here; models not measured "
                       "(fes_da; any model missing from models_measured) counted at ratio 1"}
    out = {"bench": "grid_time", "ref": sha, "db": a.db, "fold": a.fold, "profile": a.profile,
           "b_sets": a.b_sets, "runs": runs, "per_model": per_model, "grid_estimate": estimate}
    print(json.dumps({"per_model": per_model, "grid_estimate": estimate}, indent=1))
    if a.out:
        save(a.out, f"bench/grid_time.py: one {a.db} fold {a.fold} per model as its own fersnet train process, "
                    f"the project at {sha} (A) against this checkout (B), and the grid's training time scaled", out)
    return out


if __name__ == "__main__":
    main()
