"""Every file in bench/results/ is in the one schema of bench/README.md ("Results"): what was measured,
the commit measured, the machine, the date and the numbers; and the bench scripts write it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import record  # noqa: E402

RESULTS = sorted((ROOT / "bench" / "results").glob("*.json"))


def _git_checkout() -> bool:
    try:
        return subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=ROOT,
                              capture_output=True).returncode == 0
    except OSError:
        return False


def test_there_are_results_to_check():
    assert len(RESULTS) >= 20


@pytest.mark.parametrize("path", RESULTS, ids=[p.name for p in RESULTS])
def test_every_result_file_has_the_schemas_keys(path):
    doc = json.loads(path.read_text())
    assert record.problems(doc) == [], path.name
    assert list(doc)[:len(record.KEYS)] == list(record.KEYS)


@pytest.mark.skipif(not _git_checkout(), reason="the recorded commits are looked up in Git history; "
                                                  "this copy of the project is not a Git checkout")
def test_every_recorded_commit_is_a_commit_of_this_project_and_precedes_or_adds_its_file():
    for path in RESULTS:
        commit = json.loads(path.read_text())["commit"].removesuffix("+dirty")
        assert subprocess.run(["git", "cat-file", "-e", commit + "^{commit}"], cwd=ROOT).returncode == 0, path.name
        added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--", str(path.relative_to(ROOT))],
                               cwd=ROOT, capture_output=True, text=True).stdout.split()
        if added:                                     # a file not committed yet has no history to check
            ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", commit, added[-1]], cwd=ROOT)
            assert ancestor.returncode == 0, f"{path.name}: {commit[:7]} comes after the commit that added it"


@pytest.mark.parametrize("broken, complaint", [
    ({"commit": "1db12fc"}, "commit '1db12fc'"),                  # a short id: not a record of which commit
    ({"date": "Dec 3"}, "date 'Dec 3'"),
    ({"numbers": {}}, "numbers: a non-empty object"),
    ({"machine": ""}, "machine:"),
    ({"measured": "x"}, "measured:"),
    ({"from_git_log": ["machine"]}, "from_git_log"),
    ({"extra": 1}, "unknown keys ['extra']"),
])
def test_the_schema_check_names_what_is_wrong(broken, complaint):
    good = record.wrap("bench/x.py: something measured", {"a": 1.0}, {"platform": "x"}, "0" * 40, "2026-12-03")
    assert record.problems(good) == []
    found = record.problems({**good, **broken})
    assert len(found) == 1 and found[0].startswith(complaint), found
    missing = dict(good)
    del missing["commit"]
    assert record.problems(missing) == ["missing key 'commit'"]


def test_a_bench_script_writes_the_schema_with_this_checkouts_commit(tmp_path):
    out = tmp_path / "r.json"
    doc = record.save(out, "bench/x.py: a test of the writer", {"steps": 3})
    assert json.loads(out.read_text()) == doc and record.numbers(doc) == {"steps": 3}
    if _git_checkout():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        assert doc["commit"].removesuffix("+dirty") == head and record.problems(doc) == []
    assert doc["machine"]["torch"] and not list(tmp_path.glob("*.tmp"))
    assert record.numbers({"steps": 4}) == {"steps": 4}           # a file from before the schema
