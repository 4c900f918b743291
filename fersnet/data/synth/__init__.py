"""`fersnet synth`: procedural stand-ins for CK+, Oulu-CASIA and MMI in their native layouts.

The real databases are licensed; these let every later stage (the readers included) run
unchanged. What is drawn and which MMI sessions are special: docs/synthetic.md.
"""
from __future__ import annotations

import time
from pathlib import Path

from fersnet import catalog, ownership
from fersnet.errors import DataError

HOW = "pick another --out (or params synth.out), or empty it"


def _writer(db: str):
    """The stand-in writer the catalogue names for `db`."""
    if db not in catalog.DATABASES:
        raise DataError(f"synth: unknown database {db!r}; allowed: {', '.join(catalog.DATABASES)}")
    return catalog.load(catalog.database(db).writer, f"database {db}")


def write_database(cfg: dict, db: str, out) -> dict:
    """Write one stand-in database to `<out>/<db>/`, replacing an older stand-in atomically.

    The database is built in a marked temporary sibling and swapped in whole, so an interrupted
    run leaves either the old complete database or the new one, never half. Only a stand-in
    fersnet marked (or an empty folder) is replaced; a configured `data.<db>.root` that is not a
    marked stand-in is never written into or deleted from (fersnet.ownership).
    """
    writer = _writer(db)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"synth: output {out} exists and is not a folder")
    final = out / db
    made_by = ownership.step("synth", db)
    ownership.check_data_roots(cfg, final, "fersnet synth")
    ownership.check_replaceable(final, made_by, HOW)
    ownership.clean_temps(final)
    t0 = time.perf_counter()
    tmp = None
    try:
        with ownership.build_aside(final, made_by, HOW) as tmp:   # a full disk: one line naming `final`
            summary = writer(cfg, tmp)
            ownership.mark(tmp, made_by, profile=cfg.get("profile"))    # a profile's run stops over another's
    except OSError as e:
        if tmp is None:                  # the staging folder could not be made
            raise DataError(f"synth: cannot create output folder {out}: {e.strerror}") from None
        raise DataError(f"synth: writing {db} under {out} failed: {e}") from None
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
