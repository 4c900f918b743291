"""Oulu-CASIA NIR&VIS reader (Zhao et al. 2011; datasets.md §2, docs/datasets/oulu.md).

Layout (set B, `B_OriginalImg.zip`):
    OriginalImg/{NI,VL}/{Strong,Weak,Dark}/P001..P080/{Anger,...,Surprise}/000.jpeg ...
Protocol: `data.oulu.camera` + `data.oulu.lighting` (VL + Strong: 480 sequences / 80 subjects),
6 classes from the folder names, the last `data.oulu.frames` frames of each sequence.
"""
from __future__ import annotations

import re
from pathlib import Path

from fersnet.data.labels import OULU_FOLDERS
from fersnet.data.readers import (BadInput, FrameRecord, Reading, count_junk_note, numbered_frames,
                                  subfolders)
from fersnet.errors import DataError

ORIGINAL = "OriginalImg"
SUBJECT = re.compile(r"^P\d+$")


def find_base(root: Path) -> tuple[Path, Path]:
    """(base, OriginalImg folder): `root` may hold `OriginalImg`, be it, or hold `B_OriginalImg/OriginalImg`."""
    for candidate in (root / ORIGINAL, root / f"B_{ORIGINAL}" / ORIGINAL):
        if candidate.is_dir():
            return candidate.parent, candidate
    if root.name == ORIGINAL or any((root / cam).is_dir() for cam in ("VL", "NI")):
        return root.parent, root
    raise DataError(f"{root}: not an Oulu-CASIA root: no `{ORIGINAL}/` folder inside; expected "
                    f"`{ORIGINAL}/{{NI,VL}}/{{Strong,Weak,Dark}}/Pxxx/<Expression>/NNN.jpeg`, or the "
                    f"`{ORIGINAL}` folder itself (docs/datasets/oulu.md)")


def _sequence(expr_dir: Path, subject: str, base: Path, n: int, reading: Reading,
              bad: BadInput) -> list[FrameRecord]:
    frames = numbered_frames(expr_dir, ".jpeg", reading.ignored)
    if len(frames) < n:
        bad(expr_dir, f"has {len(frames)} .jpeg frame(s); the protocol needs the last {n}")
        return []
    expression = OULU_FOLDERS[expr_dir.name]
    reading.anchors[(subject, expr_dir.name)] = frames[0][1]
    return [FrameRecord(subject=subject, sequence=expr_dir.name, frame=num, expression=expression,
                        source=path.relative_to(base).as_posix(), path=path)
            for num, path in frames[-n:]]


def read(cfg: dict, root: Path, bad: BadInput) -> Reading:
    """The protocol's frames of an Oulu-CASIA copy under `root`."""
    base, original = find_base(root)
    opts = cfg["data"]["oulu"]
    folder = original / opts["camera"] / opts["lighting"]
    if not folder.is_dir():
        found = sorted(p.relative_to(original).as_posix() for p in original.glob("*/*") if p.is_dir())
        raise DataError(f"{folder}: missing; params data.oulu.camera/lighting select "
                        f"{opts['camera']}/{opts['lighting']}; found: {', '.join(found) or 'nothing'}")
    reading = Reading(db="oulu", base=base)
    for subj_dir in subfolders(folder):
        if not SUBJECT.match(subj_dir.name):
            reading.ignored.append(str(subj_dir))
            continue
        records = []
        for expr_dir in subfolders(subj_dir):
            if expr_dir.name not in OULU_FOLDERS:
                bad(expr_dir, f"unknown expression folder {expr_dir.name!r}; expected one of "
                              f"{', '.join(OULU_FOLDERS)}")
                continue
            records += _sequence(expr_dir, subj_dir.name, base, opts["frames"], reading, bad)
        if not records:
            # Every Oulu subject recorded all six expressions (80 x 6); an empty subject folder
            # means a broken copy, and silently dropping it would shift every later fold.
            bad(subj_dir, "subject has no labelled sequence (no expression folder with enough .jpeg frames)")
        reading.records += records
    count_junk_note(reading)
    return reading
