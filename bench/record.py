"""The one schema of every file in bench/results/ (bench/README.md, "Results"): what was measured,
the commit measured, the machine, the date, and the numbers.

    {"schema": "fersnet-bench/results/1",
     "measured": "bench/train_step.py: images/s of one training step per model, ...",
     "commit": "<40 hex digits>[+dirty]",
     "machine": {"platform": ..., "processor": ..., "torch": ...}  or a sentence,
     "date": "2026-12-03" or "2026-12-03T16:55:53Z",
     "numbers": {...},
     "from_git_log": ["commit", "date"]}          # only where the file did not record them itself

The bench scripts write it through `save`; `numbers` reads the numbers of a file of either form.
"""
from __future__ import annotations

import json
import platform
import re
import sys
import time
from pathlib import Path

from fersnet import ownership

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "fersnet-bench/results/1"
KEYS = ("schema", "measured", "commit", "machine", "date", "numbers")
COMMIT = re.compile(r"^[0-9a-f]{40}(\+dirty)?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?$")


def machine() -> dict:
    """What a result's numbers depend on of the machine: platform, processor, threads, torch, GPU."""
    import torch
    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def commit() -> str:
    """The commit of the code measured, `+dirty` when the checkout had uncommitted changes; outside
    a Git checkout, the package version and a hash of its sources."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from fersnet.provenance import code_version
    code = code_version()
    if code.get("git_commit"):
        return code["git_commit"] + ("+dirty" if code.get("dirty") else "")
    return f"unknown (fersnet {code.get('version')}, sources {code.get('source_hash')})"


def wrap(measured: str, numbers: dict, machine_info=None, commit_id: str | None = None,
         date: str | None = None) -> dict:
    """A result in the schema; machine, commit and date default to this machine, checkout and now."""
    return {"schema": SCHEMA, "measured": measured,
            "commit": commit_id if commit_id is not None else commit(),
            "machine": machine_info if machine_info is not None else machine(),
            "date": date or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "numbers": numbers}


def save(path, measured: str, numbers: dict, machine_info=None) -> dict:
    """Write a result in the schema (fersnet.ownership.write_text: never half a file); returns it."""
    doc = wrap(measured, numbers, machine_info)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ownership.write_text(p, json.dumps(doc, indent=2) + "\n")
    return doc


def numbers(doc: dict) -> dict:
    """The numbers of a result file: its `numbers` in the schema, the whole file before it."""
    return doc["numbers"] if doc.get("schema") == SCHEMA else doc


def problems(doc) -> list[str]:
    """What keeps `doc` from being a result in the schema (empty: it is one). A recorded commit
    must be a full commit id: a result outside a Git checkout says `unknown (...)` and is no record."""
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    out = [f"missing key {k!r}" for k in KEYS if k not in doc]
    if out:
        return out
    if doc["schema"] != SCHEMA:
        out.append(f"schema is {doc['schema']!r}, not {SCHEMA!r}")
    if not isinstance(doc["measured"], str) or len(doc["measured"].strip()) < 10:
        out.append("measured: a sentence saying what was measured")
    if not isinstance(doc["commit"], str) or not COMMIT.match(doc["commit"]):
        out.append(f"commit {doc['commit']!r}: 40 hex digits, optionally +dirty")
    if not doc["machine"] or not isinstance(doc["machine"], (str, dict)):
        out.append("machine: a sentence or an object describing the machine")
    if not isinstance(doc["date"], str) or not DATE.match(doc["date"]):
        out.append(f"date {doc['date']!r}: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ")
    if not isinstance(doc["numbers"], dict) or not doc["numbers"]:
        out.append("numbers: a non-empty object")
    extra = set(doc) - set(KEYS) - {"from_git_log"}
    if extra:
        out.append(f"unknown keys {sorted(extra)}")
    if not set(doc.get("from_git_log", [])) <= {"commit", "date"}:
        out.append("from_git_log names keys other than commit and date")
    return out
