"""Wall time and peak memory of each pipeline stage, run as the real CLI processes.

    .venv/bin/python bench/pipeline.py                   # demo profile, one fold per model
    .venv/bin/python bench/pipeline.py --grid            # ... and the whole demo grid (snakemake all)

Each stage runs in a scratch project (`--workdir`, default a temp folder) holding a copy of params.yaml,
so nothing in the checkout is touched. Peak memory is the child's max RSS from wait4(). Results go to
bench/results/pipeline-<profile>-<date>.json with the machine and versions.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
from fersnet import catalog  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from record import save  # noqa: E402


def run(cmd: list[str], cwd: Path, env: dict) -> dict:
    """Run one command; return wall seconds, peak RSS (MiB) and exit status."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")[-2000:]
    p.stderr.close()
    rc = os.waitstatus_to_exitcode(status)
    return {"cmd": " ".join(cmd), "seconds": round(wall, 3), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3), "rc": rc,
            **({"stderr_tail": err} if rc else {})}


def machine() -> dict:
    import torch
    return {"host": platform.node(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--workdir", help="scratch project folder (default: a new temp folder)")
    ap.add_argument("--grid", action="store_true", help="also time the whole grid (snakemake all)")
    ap.add_argument("--db", default="ckplus", help="database for the one-fold stages")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the start-up measurement")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args()

    work = Path(a.workdir or tempfile.mkdtemp(prefix="fersnet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "params.yaml", work / "params.yaml")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    fers = [str(BIN / "fersnet")]
    prof = ["--profile", a.profile]

    stages: dict[str, dict] = {}
    startup = [run([str(BIN / "python"), "-c", "import torch"], work, env)["seconds"] for _ in range(a.repeats)]
    help_ = [run(fers + ["--help"], work, env)["seconds"] for _ in range(a.repeats)]
    stages["startup/import_torch"] = {"seconds_median": sorted(startup)[len(startup) // 2], "all": startup}
    stages["startup/fersnet_help"] = {"seconds_median": sorted(help_)[len(help_) // 2], "all": help_}

    def stage(name, args):
        r = run(fers + args + prof, work, env)
        stages[name] = r
        print(f"{name:32s} {r['seconds']:8.2f} s  {r['peak_rss_mib']:8.1f} MiB  rc={r['rc']}", flush=True)
        return r["rc"] == 0

    stage("synth", ["synth"])
    for db in catalog.database_keys():
        stage(f"preprocess/{db}", ["preprocess", "--db", db])
    for model in catalog.model_keys():
        stage(f"train/{a.db}/{model}/fold0", ["train", "--db", a.db, "--model", model, "--fold", "0"])
    stage(f"judge/{a.db}/fold0", ["judge", "--db", a.db, "--fold", "0"])
    for model in catalog.generators():
        stage(f"score/{a.db}/{model}/fold0", ["score", "--db", a.db, "--model", model, "--fold", "0"])
    stage("report", ["report"])
    if a.grid:
        r = run([str(BIN / "snakemake"), "--cores", str(os.cpu_count()), "--config", f"profile={a.profile}",
                 "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(work), "all"], work, env)
        stages["grid/snakemake_all"] = r
        print(f"{'grid/snakemake_all':32s} {r['seconds']:8.2f} s  rc={r['rc']}")

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    path = out / f"pipeline-{a.profile}-{stamp}.json"
    save(path, f"bench/pipeline.py: wall seconds and peak RSS of each CLI stage as its own process "
               f"({a.profile} profile)", {"profile": a.profile, "stages": stages}, machine())
    print(f"wrote {path}")
    return 0 if all(v.get("rc", 0) == 0 for v in stages.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
