"""Reader of a database defined in params.yaml alone (fersnet.data.generic; docs/datasets/generic.md).

Two layouts, chosen by `data.<key>.layout`:
- `folders`: root/<subject>/<expression>/<images> (PNG, JPEG, BMP, TIFF); the expression folder
  names are the classes of `data.<key>.classes`.
- `manifest`: a CSV (`data.<key>.manifest`) with columns path, subject, expression and optionally
  sequence, frame; paths relative to root.
With `data.<key>.frames` null every image is one sample; with N, the images of a sequence (an
expression folder, or the manifest's (subject, sequence) rows ordered by `frame`) give its last N.
Images of any size, gray or colour, 8 or 16 bit are converted as the other readers do
(readers.read_image); the faces are found by the detector (no landmarks).
"""
from __future__ import annotations

import csv
from pathlib import Path

from fersnet.data.readers import BadInput, FrameRecord, Reading, entries, is_junk, natural_key, shown
from fersnet.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
REQUIRED = ("path", "subject", "expression")
OPTIONAL = ("sequence", "frame")


def read(cfg: dict, root: Path, bad: BadInput, db: str) -> Reading:
    """The samples of database `db` (a `data.<db>` section with a `layout`) under `root`."""
    opts = cfg["data"][db]
    reading = Reading(db=db, base=Path(root), strict=cfg["data"]["check_counts"] == "error")
    if opts["layout"] == "folders":
        _folders(Path(root), db, opts, reading, bad)
    else:
        _manifest(Path(root), db, opts, reading, bad)
    return reading


read.shared = True       # one reader for every database defined in params: readers.read passes `db`


def no_stand_in(cfg: dict, folder) -> dict:
    """`fersnet synth` for a database defined in params: there is none to write."""
    raise DataError("a database defined in params.yaml (a `data` section with a `layout`) has no synthetic "
                    "stand-in; set that section's `root` to your copy and run `fersnet preprocess`")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not is_junk(path)


def _folders(root: Path, key: str, opts: dict, reading: Reading, bad: BadInput) -> None:
    classes, n = opts["classes"], opts["frames"]
    for subj_dir in entries(root):
        if not subj_dir.is_dir():
            reading.foreign(subj_dir, "subject folders (root/<subject>/<expression>/<images>)")
            continue
        records: list[FrameRecord] = []
        for expr_dir in entries(subj_dir):
            if not expr_dir.is_dir():
                reading.foreign(expr_dir, f"expression folders ({', '.join(classes)})")
                continue
            if expr_dir.name not in classes:
                bad(expr_dir, f"unknown expression folder {expr_dir.name!r}; params data.{key}.classes "
                              f"lists {', '.join(classes)}")
                continue
            images = []
            for p in entries(expr_dir):
                if _is_image(p):
                    images.append(p)
                else:
                    reading.foreign(p, "image files (" + ", ".join(IMAGE_SUFFIXES) + ")")
            records += _take(images, subj_dir.name, expr_dir.name, n, root, reading, bad, expr_dir)
        if not records:
            bad(subj_dir, "subject has no image in an expression folder"
                + (f" with at least {n} images (params data.{key}.frames)" if n else ""))
        reading.records += records


def _take(images: list[Path], subject: str, expression: str, n: int | None, base: Path,
          reading: Reading, bad: BadInput, where) -> list[FrameRecord]:
    """The records of one expression folder: every image, or its last `n` as one sequence."""
    if n is None:
        return [FrameRecord(subject=subject, sequence=f"{expression}/{p.name}", frame=0, expression=expression,
                            source=p.relative_to(base).as_posix(), path=p) for p in images]
    if len(images) < n:
        bad(where, f"has {len(images)} image(s); params frames asks for the last {n}")
        return []
    reading.anchors[(subject, expression)] = images[0]
    return [FrameRecord(subject=subject, sequence=expression, frame=i, expression=expression,
                        source=p.relative_to(base).as_posix(), path=p)
            for i, p in list(enumerate(images))[-n:]]


def _manifest(root: Path, key: str, opts: dict, reading: Reading, bad: BadInput) -> None:
    path = Path(opts["manifest"])
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise DataError(f"{shown(path)}: manifest not found (params data.{key}.manifest; a relative "
                        "path is read under the root)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            table = csv.DictReader(f)
            header = [h.strip() for h in table.fieldnames or []]
            rows = list(table)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{shown(path)}: cannot read the manifest ({e})") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(f"{shown(path)}: manifest lacks column(s) {', '.join(missing)}; it needs "
                        f"{', '.join(REQUIRED)} (optional {', '.join(OPTIONAL)}); found: {', '.join(header) or 'no header'}")
    n = opts["frames"]
    if n is not None and not all(c in header for c in OPTIONAL):
        raise DataError(f"{shown(path)}: params data.{key}.frames is {n}, which needs the manifest's "
                        "`sequence` and `frame` columns (or set frames: null for one sample per row)")
    classes = opts["classes"]
    seen: dict = {}
    groups: dict = {}
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        where = f"{shown(path)} line {line}"
        if not all(row.get(c) for c in REQUIRED):
            bad(where, f"empty {', '.join(c for c in REQUIRED if not row.get(c))}")
            continue
        if row["expression"] not in classes:
            bad(where, f"unknown expression {row['expression']!r}; params data.{key}.classes lists "
                       f"{', '.join(classes)}")
            continue
        file = root / row["path"]
        if Path(row["path"]).is_absolute() or ".." in Path(row["path"]).parts:
            bad(where, f"path {row['path']!r} must be relative to the root, inside it")
            continue
        if not file.is_file():
            bad(file, f"listed on manifest line {line} but not found under the root")
            continue
        frame = 0
        if row.get("frame"):
            try:
                frame = int(row["frame"])
            except ValueError:
                bad(where, f"frame {row['frame']!r} is not an integer")
                continue
        sequence = row.get("sequence") or f"{row['expression']}/{row['path']}"
        ident = (row["subject"], sequence, frame if row.get("sequence") else row["path"])
        if ident in seen:
            reading.pass_over(file, f"same subject, sequence and frame as manifest line {seen[ident]}; "
                                    "only that one is used")
            continue
        seen[ident] = line
        groups.setdefault((row["subject"], sequence), []).append(
            FrameRecord(subject=row["subject"], sequence=sequence, frame=frame, expression=row["expression"],
                        source=Path(row["path"]).as_posix(), path=file))
    for (subject, sequence), recs in sorted(groups.items(), key=lambda kv: (natural_key(kv[0][0]), kv[0])):
        labels = {r.expression for r in recs}
        if len(labels) > 1:
            bad(f"{shown(path)} sequence {subject}/{sequence}", f"rows carry different expressions "
                                                                f"({', '.join(sorted(labels))})")
            continue
        recs.sort(key=lambda r: r.frame)
        if n is not None:
            if len(recs) < n:
                bad(f"{shown(path)} sequence {subject}/{sequence}",
                    f"has {len(recs)} frame(s); params data.{key}.frames asks for the last {n}")
                continue
            reading.anchors[(subject, sequence)] = recs[0].path
            recs = recs[-n:]
        reading.records += recs
