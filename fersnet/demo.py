"""Run the whole benchmark pipeline on the synthetic stand-in through Snakemake, then say where the outputs are.

    python -m fersnet.demo [--cores N] [--profile demo|test|paper] [--dry-run] [TARGET ...]

runs `snakemake --cores N TARGET` (default target `all`: synth -> preprocess -> train/judge ->
score -> pool -> report, MLflow tracking alongside) in the project root, then prints the headline
numbers and where the outputs are. Snakemake's output is passed through; after each finished job
a line gives the steps done, the time elapsed and an estimate of what remains (fersnet/progress.py).
Snakemake's state makes it resumable: run it again to finish an interrupted demo.
A run killed outright (kill -9, a closed terminal, a power cut) leaves Snakemake's lock behind
(.snakemake/locks/); when no Snakemake process runs in the project any more, the next run removes
it (`snakemake --unlock`) and says so, then resumes.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from fersnet import config, names, paths, progress
from fersnet.errors import FersnetError
from fersnet.tracking.store import tracking_uri

ROOT = Path(__file__).resolve().parents[1]
LOCKS = Path(".snakemake") / "locks"


def _runs_snakemake(cmdline: list[str]) -> bool:
    """`snakemake ...`, `<python> <venv>/bin/snakemake ...` or `<python> -m snakemake ...`."""
    return any(Path(arg).name == "snakemake" for arg in cmdline[:3])


def snakemake_processes(root) -> list[int]:
    """PIDs of the Snakemake processes on this machine that run in `root` (or a folder below it).

    A Snakemake process whose folder cannot be read (another user's) counts as running here: the
    lock is then left alone. Processes on other machines (a shared file system) are not seen.
    """
    import psutil                      # requirements.in (also a dependency of Snakemake)

    root = Path(root).resolve()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid == os.getpid() or not _runs_snakemake(proc.info["cmdline"] or []):
                continue
            cwd = Path(proc.cwd()).resolve()
        except psutil.AccessDenied:
            found.append(proc.pid)
            continue
        except (psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            continue
        if cwd == root or root in cwd.parents:
            found.append(proc.pid)
    return found


def held_locks(root) -> list[Path]:
    """The lock files Snakemake keeps in `root` while it runs (.snakemake/locks/)."""
    folder = Path(root) / LOCKS
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def unlock_command(cfg: dict) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--unlock", "--config", f"profile={cfg['profile']}"]


def unlock_if_abandoned(root, unlock: list[str], env=None) -> str | None:
    """Remove Snakemake's lock in `root` when it is held by no running process: a run killed
    outright (kill -9) leaves it behind and the next run would stop on it. `unlock` is the
    `snakemake --unlock` command line (unlock_command). Returns the line to
    print; None when there was no lock, or a Snakemake process still runs here (its lock stays,
    and Snakemake itself then says the folder is locked)."""
    locks = held_locks(root)
    if not locks:
        return None
    running = snakemake_processes(root)
    if running:
        return None
    done = subprocess.run(unlock, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FersnetError(f"{Path(root) / LOCKS}: the lock of an interrupted Snakemake run could not be "
                           f"removed (`snakemake --unlock`: {tail[0]})")
    return (f"fersnet demo: removed the lock an interrupted Snakemake run left in {Path(root) / LOCKS} "
            f"({len(locks)} file(s); no Snakemake process runs in {root}); resuming")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m fersnet.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default=str(os.cpu_count() or 1),
                    help="Snakemake --cores (default: all cores of this machine, %(default)s)")
    ap.add_argument("--profile", choices=config.PROFILES, help="params profile (default: params.yaml's)")
    ap.add_argument("--dry-run", action="store_true", help="only show the jobs Snakemake would run")
    ap.add_argument("targets", nargs="*", default=["all"], help="Snakemake targets (default: all)")
    return ap


def snakemake_command(args, cfg: dict) -> list[str]:
    # targets before --config, which takes every following word as a KEY=VALUE
    cmd = [sys.executable, "-m", "snakemake", *args.targets, "--cores", str(args.cores)]
    if args.dry_run:
        cmd += ["--dry-run", "--quiet", "rules"]
    return cmd + ["--config", f"profile={cfg['profile']}"]


def run_with_progress(cmd: list[str], env: dict | None, targets: list[str], root=ROOT, out=None, err=None) -> int:
    """Run Snakemake in `root` with its output (stderr) passed through to `err`, and after each
    finished job a progress line (progress.Progress, timed by the benchmark records under `root`)
    on `out`. Returns Snakemake's exit code.

    Ctrl-C in the terminal reaches Snakemake itself (the same process group), which stops its jobs
    and exits; meanwhile this process ignores it and keeps passing Snakemake's last lines on."""
    out, err = out or sys.stdout, err or sys.stderr
    tracker = progress.Progress(timings=progress.benchmarked_seconds(root), targets=tuple(targets))
    proc = subprocess.Popen(cmd, cwd=root, env=env, stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        for line in proc.stderr:
            err.write(line)
            err.flush()
            for said in tracker.feed(line):
                print("fersnet demo: " + said, file=out, flush=True)
        return proc.wait()
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
        if proc.poll() is None:          # this process is going down before Snakemake: stop it too
            proc.terminate()
            proc.wait()


def pdf_state(cfg: dict) -> str | None:
    """None when reports/report.pdf was compiled, else why not and how to build it."""
    reports = paths.reports_dir(cfg)
    try:
        said = json.loads((reports / "summary.json").read_text()).get("pdf", "")
    except (OSError, ValueError):
        said = "no report yet"
    if said == "compiled" and (reports / "report.pdf").is_file():
        return None
    return (f"{reports}/report.pdf was NOT built ({said}); install LaTeX (docs/reports.md, \"LaTeX\"), "
            "then run the same command again: it builds the PDF alone")


def headline_table(cfg: dict) -> str | None:
    """reports/headline.json as a few terminal lines: FER accuracy per database and model, and the
    judged synthesis of each generator (%)."""
    try:
        headline = json.loads((paths.reports_dir(cfg) / "headline.json").read_text())
    except (OSError, ValueError):
        return None
    dbs = [db for db in headline if headline[db]]
    models = list(dict.fromkeys(m for db in dbs for m in headline[db]))
    if not dbs:
        return None

    def cell(db, model, key):
        value = headline[db].get(model, {}).get(key)
        return f"{value:6.1f}" if isinstance(value, (int, float)) else "     -"
    width = max(len(names.MODEL.get(m, m)) for m in models)
    head = " " * (width + 2) + "  ".join(f"{names.DATABASE.get(db, db)[:13]:>13s}" for db in dbs)
    lines = ["fersnet demo: headline (%; FER accuracy / judged synthesis, mean over folds)", head]
    for m in models:
        cells = "  ".join(f"{cell(db, m, 'accuracy')} /{cell(db, m, 'judged_synthesis').strip():>5s}" for db in dbs)
        lines.append(f"  {names.MODEL.get(m, m):<{width}s}{cells}")
    return "\n".join(lines)


def where_outputs_are(cfg: dict) -> str:
    """The closing message: the folders and files a user opens next, and what was not built."""
    reports = paths.reports_dir(cfg)
    lines = [
        "fersnet demo: outputs",
        f"  raw stand-in      {cfg['synth']['out']}/<db>/",
        f"  processed faces   {cfg['preprocess']['out']}/<db>/ (report.md, contact_sheet.png)",
        f"  results           {cfg['paths']['results']}/<db>/<model>/seed<s>/fold<k>/ (metrics.json, synthesis/grid.png)",
        f"  report            {reports}/report.pdf, {reports}/tables/, {reports}/figures/, {reports}/summary.json",
        "  one page to send  snakemake --report report.html   (every figure, table and the PDF in one file)",
        "  per-job logs      logs/, per-job time and memory in benchmarks/",
    ]
    if cfg["mlflow"]["enabled"]:
        uri = tracking_uri(cfg)
        lines += [f"  MLflow store      {uri}",
                  "  compare models    fersnet compare   (or --experiment ckplus --filter profile="
                  f"{cfg['profile']})",
                  f"  MLflow UI         mlflow ui --backend-store-uri {uri} --host 127.0.0.1"]
    missing = pdf_state(cfg)
    if missing:
        lines += ["  not built         " + missing]
    return "\n".join(lines)


def record_in_dvc(args, cfg: dict, env=None) -> str | None:
    """After a complete run of `all`: write dvc.lock as `dvc repro` would have (`dvc commit --force`),
    so that the first `dvc repro` after the demo has nothing to do. Only when the run is what DVC's
    stages describe (target `all`, params.yaml's own profile, a project with dvc.yaml) and every
    result of the grid is current; otherwise nothing is recorded. Returns the line to print."""
    if args.dry_run or list(args.targets) != ["all"] or not Path("dvc.yaml").is_file():
        return None
    if config.read_params("params.yaml").get("profile") != cfg["profile"]:
        return (f"fersnet demo: dvc.lock not written: DVC runs params.yaml's profile, this run was profile "
                f"{cfg['profile']}")
    from fersnet import status
    behind = [r for r in status.check(cfg) if r.state != status.CURRENT and r.reasons != ["code"]]
    if behind:
        return (f"fersnet demo: dvc.lock not written: {len(behind)} result(s) are not current "
                f"(`fersnet status`), e.g. {behind[0].label}")
    # the train and score stages' outs: the manifests of the results, which `all` does not write
    manifests = argparse.Namespace(targets=["all_folds", "all_scores"], cores=args.cores, dry_run=False)
    for what, cmd in (("snakemake all_folds all_scores", snakemake_command(manifests, cfg)),
                      ("dvc commit", [sys.executable, "-m", "dvc", "commit", "--force", "--quiet"])):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
            return (f"fersnet demo: dvc.lock not written ({what}: {tail[0]}); the first `dvc repro` re-runs "
                    "every stage")
    return "fersnet demo: recorded this run in dvc.lock (dvc commit): `dvc repro` now re-runs only what changes"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.chdir(ROOT)
    try:
        cfg = config.load("params.yaml", args.profile)
    except FersnetError as e:
        print(f"fersnet demo: error: {e}", file=sys.stderr)
        return 2
    env = dict(os.environ, DVC_NO_ANALYTICS="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    cmd = snakemake_command(args, cfg)
    if not args.dry_run:
        try:
            said = unlock_if_abandoned(ROOT, unlock_command(cfg), env)
        except FersnetError as e:
            print(f"fersnet demo: error: {e}", file=sys.stderr)
            return 2
        if said:
            print(said, flush=True)
        from fersnet import status
        clash = status.workflow_profile_clash(cfg, args.targets)
        if clash:                # Snakemake would stop at its start; say it here, without "resume"
            print(clash, file=sys.stderr)
            return 2
    print("fersnet demo: " + " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    rc = run_with_progress(cmd, env, args.targets)
    minutes = (time.perf_counter() - t0) / 60
    if rc != 0:
        print(f"fersnet demo: Snakemake failed (exit {rc}) after {minutes:.1f} min; see the log named "
              "above and logs/; run the same command again to resume", file=sys.stderr)
        return 1
    if not args.dry_run:
        print(f"fersnet demo: done in {minutes:.1f} min (profile {cfg['profile']})")
        recorded = record_in_dvc(args, cfg, env)
        if recorded:
            print(recorded, flush=True)
        table = headline_table(cfg)
        if table:
            print(table)
        print(where_outputs_are(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
