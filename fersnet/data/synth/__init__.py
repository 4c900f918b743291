"""`fersnet synth`: procedural stand-ins for CK+, Oulu-CASIA and MMI in their native layouts.

The real databases are licensed; these let every later stage (the readers included) run
unchanged. What is drawn and which MMI sessions are special: docs/synthetic.md.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from fersnet.errors import DataError


def _writer(db: str):
    from fersnet.data.synth import ckplus, mmi, oulu
    try:
        return {"ckplus": ckplus.write, "oulu": oulu.write, "mmi": mmi.write}[db]
    except KeyError:
        raise DataError(f"synth: unknown database {db!r}; allowed: ckplus, oulu, mmi") from None


def write_database(cfg: dict, db: str, out) -> dict:
    """Write one stand-in database to `<out>/<db>/`, replacing an older one atomically.

    The database is built in a hidden temporary sibling and renamed into place, so an
    interrupted run leaves either the old complete database or the new one, never half.
    """
    writer = _writer(db)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"synth: output {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"synth: cannot create output folder {out}: {e.strerror}") from None
    final, tmp, old = out / db, out / f".{db}.tmp-{os.getpid()}", out / f".{db}.old-{os.getpid()}"
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        summary = writer(cfg, tmp)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"synth: writing {db} under {out} failed: {e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return {"db": db, "root": str(final), **summary, "seconds": round(time.perf_counter() - t0, 2)}


def main(cfg: dict, args) -> dict:
    """CLI verb: write every requested database (args.db or params `databases`) to
    args.out or params `synth.out`; returns a summary per database."""
    dbs = getattr(args, "db", None) or cfg["databases"]
    out = getattr(args, "out", None) or cfg["synth"]["out"]
    result = {}
    for db in dict.fromkeys(dbs):
        s = write_database(cfg, db, out)
        result[db] = {k: s[k] for k in ("root", "files", "subjects", "seconds")}
    return result
