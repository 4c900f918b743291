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
from fersnet.data.readers import PROTOCOL, BadInput, FrameRecord, Reading, entries, numbered_frames, subfolders
from fersnet.errors import DataError

ORIGINAL = "OriginalImg"
SUBJECT, FRAME = re.compile(r"P\d+"), re.compile(r"(\d+)\.jpeg", re.IGNORECASE)
CAMERA, LIGHTING = re.compile(r"NI|VL"), re.compile(r"Strong|Weak|Dark")


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
    frames = numbered_frames(expr_dir, reading, FRAME, "frames named by their number, NNN.jpeg (e.g. 017.jpeg)")
    if len(frames) < n:
        bad(expr_dir, f"has {len(frames)} .jpeg frame(s); the protocol needs the last {n}")
        return []
    expression = OULU_FOLDERS[expr_dir.name]
    reading.anchors[(subject, expr_dir.name)] = frames[0][1]
    return [FrameRecord(subject=subject, sequence=expr_dir.name, frame=num, expression=expression,
                        source=path.relative_to(base).as_posix(), path=path)
            for num, path in frames[-n:]]


def _other_folders(original: Path, camera: str, lighting: str, reading: Reading) -> None:
    """Pass over, by name, the camera/lighting folders the protocol does not select."""
    for cam in subfolders(original, reading, CAMERA, "camera folders NI or VL"):
        for light in subfolders(cam, reading, LIGHTING, "lighting folders Strong, Weak or Dark"):
            if (cam.name, light.name) != (camera, lighting):
                reading.pass_over(light, f"camera/lighting not selected (params data.oulu.camera/lighting "
                                         f"select {camera}/{lighting})", PROTOCOL)


def read(cfg: dict, root: Path, bad: BadInput) -> Reading:
    """The protocol's frames of an Oulu-CASIA copy under `root`."""
    base, original = find_base(root)
    opts = cfg["data"]["oulu"]
    folder = original / opts["camera"] / opts["lighting"]
    if not folder.is_dir():
        found = sorted(p.relative_to(original).as_posix() for p in original.glob("*/*") if p.is_dir())
        raise DataError(f"{folder}: missing; params data.oulu.camera/lighting select "
                        f"{opts['camera']}/{opts['lighting']}; found: {', '.join(found) or 'nothing'}")
    reading = Reading(db="oulu", base=base, strict=cfg["data"]["check_counts"] == "error")
    _other_folders(original, opts["camera"], opts["lighting"], reading)
    for subj_dir in subfolders(folder, reading, SUBJECT, "subject folders P<digits> (e.g. P001)"):
        records = []
        for expr_dir in entries(subj_dir):
            if not expr_dir.is_dir():
                reading.foreign(expr_dir, "expression folders (" + ", ".join(OULU_FOLDERS) + ")")
            elif expr_dir.name not in OULU_FOLDERS:
                bad(expr_dir, f"unknown expression folder {expr_dir.name!r}; expected one of "
                              f"{', '.join(OULU_FOLDERS)}")
            else:
                records += _sequence(expr_dir, subj_dir.name, base, opts["frames"], reading, bad)
        if not records:
            # Every Oulu subject recorded all six expressions (80 x 6); an empty subject folder
            # means a broken copy, and silently dropping it would shift every later fold.
            bad(subj_dir, "subject has no labelled sequence (no expression folder with enough .jpeg frames)")
        reading.records += records
    return reading
