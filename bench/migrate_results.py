"""Bring result files written before the schema (bench/record.py, bench/README.md "Results") into it.

The numbers stay as they were, under `numbers`; what the file says of itself moves up: its description
(`bench` or `what`) to `measured`, its `date`, `machine` (with its `cpu`) and `commit` (or the single
code version `bench/demo_quality.py` recorded) to theirs. What the file does not say is taken from
`git log` of the file, from the commit that added it, and named in `from_git_log`; a machine the file
does not describe reads "as recorded in docs/lab-notebook.md". Files already in the schema are left
as they are, so running it again changes nothing.

    .venv/bin/python bench/migrate_results.py [FILE ...]       # default: every bench/results/*.json
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import SCHEMA, problems  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# what a file measured, for the files that did not say it in a sentence of their own
MEASURED = {
    "train_step": "bench/train_step.py: seconds and images/s of one full training step per model, fast path "
                  "against the straightforward path",
    "profile_step": "bench/profile_step.py: where a training step's CPU time goes per model, forward / backward / "
                    "optimizer and the top operators",
    "levers": "bench/levers.py: CPU and wall ms per training step, A against B for training-speed levers",
    "grid_time": "bench/grid_time.py: one fold per model as its own fersnet train process, the project at the "
                 "reference commit (A) against the code measured (B), and the grid's training time scaled",
    "conv_grouping": "bench/conv_grouping.py: CPU ms of a training step's convolutions, the folds as separate "
                     "calls against one grouped call, and the whole-step bound",
    "pipeline": "bench/pipeline.py: wall seconds and peak RSS of each CLI stage as its own process",
}
NO_MACHINE = "as recorded in docs/lab-notebook.md (the file does not describe it)"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def full_commit(text: str) -> str:
    """`1db12fc`, `04ef415 (fresh clone)` or `ba44274+dirty(src ...)` as a full commit id (+dirty)."""
    m = re.match(r"([0-9a-f]{7,40})(\+dirty)?", text)
    if not m:
        raise SystemExit(f"migrate_results: {text!r} names no commit")
    return git("rev-parse", "--verify", m.group(1) + "^{commit}") + (m.group(2) or "")


def added_by(path: Path) -> tuple[str, str]:
    """The commit that added `path` and its date (YYYY-MM-DD)."""
    rows = git("log", "--diff-filter=A", "--format=%H %cs", "--", str(path.relative_to(ROOT))).splitlines()
    if not rows:
        raise SystemExit(f"migrate_results: {path} has no commit that added it (commit it first)")
    commit, date = rows[-1].split()
    return commit, date


def migrate(path: Path) -> dict | None:
    """The file's content in the schema, or None when it is in it already."""
    old = json.loads(path.read_text())
    if isinstance(old, dict) and old.get("schema") == SCHEMA:
        return None
    numbers = dict(old)
    text = numbers.pop("what", None) or numbers.pop("bench", None) or path.stem.split("-")[0]
    measured = MEASURED.get(text, text)        # a script's short name, or a sentence of the file's own
    machine = numbers.pop("machine", None) or NO_MACHINE
    if isinstance(machine, dict) and isinstance(numbers.get("cpu"), str):
        machine = {**machine, "cpu": numbers.pop("cpu")}
    from_log = []
    added, added_date = added_by(path)
    versions = numbers.get("code_versions") or []
    if "commit" in numbers:
        commit = full_commit(str(numbers.pop("commit")))
    elif len(versions) == 1:
        commit = full_commit(versions[0])
    else:
        commit, from_log = added, from_log + ["commit"]
    date = numbers.pop("date", None)
    if date is None and isinstance(machine, dict) and isinstance(machine.get("date"), str):
        machine = dict(machine)                # bench/pipeline.py kept the date with the machine
        date = machine.pop("date").replace("+00:00", "Z")
    if date is None:
        date, from_log = added_date, from_log + ["date"]
    doc = {"schema": SCHEMA, "measured": measured, "commit": commit, "machine": machine, "date": date,
           "numbers": numbers}
    if from_log:
        doc["from_git_log"] = from_log
    return doc


def main(argv=None) -> int:
    files = [Path(f).resolve() for f in (argv if argv is not None else sys.argv[1:])] or \
        sorted((ROOT / "bench" / "results").glob("*.json"))
    for path in files:
        doc = migrate(path)
        if doc is None:
            print(f"{path.relative_to(ROOT)}: in the schema already")
            continue
        bad = problems(doc)
        if bad:
            raise SystemExit(f"migrate_results: {path.relative_to(ROOT)}: " + "; ".join(bad))
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        tmp.replace(path)
        print(f"{path.relative_to(ROOT)}: {doc['commit'][:7]} {doc['date']}"
              + (f" (from git log: {', '.join(doc['from_git_log'])})" if "from_git_log" in doc else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
