"""CK+ reader (Lucey et al. 2010; datasets.md §1, docs/datasets/ckplus.md).

Layout, as unpacked from the official zips:
    cohn-kanade-images/S005/001/S005_001_00000011.png
    Emotion/S005/001/S005_001_00000011_emotion.txt       one float code 0-7, only for labelled sequences
    Landmarks/S005/001/S005_001_00000011_landmarks.txt   68 "x y" lines, every image
Protocol: the labelled sequences (327 / 118 subjects), 7 classes, the last `data.ckplus.frames`
frames of each; `include_neutral` adds each sequence's first frame as `neutral`.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from fersnet.data.labels import CKPLUS_CODES
from fersnet.data.readers import (PROTOCOL, BadInput, FrameRecord, Reading, entries, natural_key,
                                  numbered_frames, subfolders)
from fersnet.errors import DataError

IMAGES, EMOTION, LANDMARKS = "cohn-kanade-images", "Emotion", "Landmarks"
SUBJECT, SEQUENCE = re.compile(r"S\d+"), re.compile(r"\d+")
N_POINTS = 68
# Code 0 (neutral) exists in the code table but never labels a sequence (ReadMe; the 327
# labelled sequences use 1-7), so a 0 in an Emotion file is as wrong as an 8.
SEQUENCE_CODES = range(1, 8)


def _layout_error(root: Path, missing: str) -> DataError:
    return DataError(f"{root}: not a CK+ root: no `{missing}/` folder inside; expected "
                     f"`{IMAGES}/`, `{EMOTION}/` and `{LANDMARKS}/` as unpacked from the CK+ zips "
                     "(docs/datasets/ckplus.md)")


def parse_emotion(path: Path, bad: BadInput) -> int | None:
    """The code in an Emotion file (e.g. '3.0000000e+00' -> 3), or None after reporting it as bad."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError as e:
        bad(path, f"cannot read ({e.strerror or e})")
        return None
    if not text:
        bad(path, "empty label file; expected one emotion code 1-7 such as 3.0000000e+00")
        return None
    values = text.split()
    if len(values) != 1:
        bad(path, f"holds {len(values)} values ({' '.join(values)[:40]!r}); expected one emotion code 1-7 "
                  "such as 3.0000000e+00")
        return None
    try:
        value = float(values[0])
    except ValueError:
        bad(path, f"label is not a number: {text[:40]!r}; expected one emotion code 1-7")
        return None
    if not math.isfinite(value):
        bad(path, f"label {values[0]} is not a finite number; expected one emotion code 1-7")
        return None
    code = int(value)   # datasets.md: parse with int(float(text))
    if value != code or code not in SEQUENCE_CODES:
        bad(path, f"label {values[0]} out of range; CK+ sequence codes are 1-7 "
                  "(1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise)")
        return None
    return code


def parse_landmarks(path: Path, bad: BadInput) -> np.ndarray | None:
    """68 (x, y) points of a landmarks file, or None after reporting it as bad."""
    if not path.is_file():
        bad(path, "missing landmarks file (CK+ alignment uses the 68 AAM landmarks of every frame)")
        return None
    try:
        values = np.array(path.read_text(errors="replace").split(), dtype=np.float64)
    except OSError as e:
        bad(path, f"cannot read ({e.strerror or e})")
        return None
    except ValueError:
        bad(path, "landmarks are not numbers; expected 68 lines of 'x y'")
        return None
    if values.size % 2 or values.size // 2 != N_POINTS or not np.isfinite(values).all():
        bad(path, f"has {values.size / 2:g} points; expected {N_POINTS} lines of 'x y'")
        return None
    points = values.reshape(N_POINTS, 2)
    if np.hypot(*(points[36:42].mean(0) - points[42:48].mean(0))) < 1.0:
        bad(path, "eye landmarks (points 36-47) coincide; the face cannot be aligned")
        return None
    return points


def _label_files(label_dir: Path, subject: str, seq: str, reading: Reading) -> list[tuple[int, Path]]:
    """(frame, path) of the sequence's `S005_001_00000011_emotion.txt` files; other entries passed over."""
    if not label_dir.is_dir():
        return []
    name = re.compile(rf"{re.escape(subject)}_{re.escape(seq)}_(\d{{8}})_emotion\.txt")
    return numbered_frames(label_dir, reading, name, f"{subject}_{seq}_<8-digit frame>_emotion.txt")


def _sequence_records(root: Path, subject: str, seq: str, expression: str, label: tuple[int, Path],
                      cfg: dict, reading: Reading, bad: BadInput) -> list[FrameRecord]:
    n = cfg["data"]["ckplus"]["frames"]
    neutral = cfg["data"]["ckplus"]["include_neutral"]
    need = n + int(neutral)
    img_dir = root / IMAGES / subject / seq
    if not img_dir.is_dir():
        bad(img_dir, "labelled in Emotion/ but the image folder is missing")
        return []
    frames = numbered_frames(img_dir, reading, re.compile(rf"{re.escape(subject)}_{re.escape(seq)}_(\d{{8}})\.png"),
                             f"{subject}_{seq}_<8-digit frame>.png")
    if len(frames) < need:
        what = f"the last {n}" + (" plus the first as neutral" if neutral else "")
        bad(img_dir, f"has {len(frames)} frame(s); the protocol needs {need} ({what})")
        return []
    if label[0] not in dict(frames):
        # The label names the sequence's peak frame (ReadMe); without it the label belongs to no image.
        reading.pass_over(label[1], f"names frame {label[0]}, which is not in "
                                    f"{reading.relative(img_dir)}; the sequence is left out")
        return []
    chosen = [(num, path, expression) for num, path in frames[-n:]]
    if neutral:
        chosen.insert(0, (frames[0][0], frames[0][1], "neutral"))
    out = []
    for num, path, expr in chosen:
        lm = parse_landmarks(root / LANDMARKS / subject / seq / f"{path.stem}_landmarks.txt", bad)
        if lm is None:
            continue
        out.append(FrameRecord(subject=subject, sequence=seq, frame=num, expression=expr,
                               source=path.relative_to(root).as_posix(), path=path, landmarks=lm))
    return out


def read(cfg: dict, root: Path, bad: BadInput) -> Reading:
    """The protocol's frames of a CK+ copy under `root`."""
    for folder in (IMAGES, EMOTION, LANDMARKS):
        if not (root / folder).is_dir():
            raise _layout_error(root, folder)
    reading = Reading(db="ckplus", base=root, strict=cfg["data"]["check_counts"] == "error")
    for subject, seq in _sequences(root, reading):
        label_dir = root / EMOTION / subject / seq
        label_files = _label_files(label_dir, subject, seq, reading)
        if not label_files:
            # ReadMe: "IF THERE IS NO FILE IT MEANS THAT THERE IS NO EMOTION LABEL"
            img_dir = root / IMAGES / subject / seq
            reading.pass_over(img_dir if img_dir.is_dir() else label_dir,
                              "unlabelled sequence (no Emotion file)", PROTOCOL)
            continue
        if len(label_files) > 1:
            bad(label_dir, f"{len(label_files)} *_emotion.txt files in one sequence; expected one")
            continue
        code = parse_emotion(label_files[0][1], bad)
        if code is None:
            continue
        reading.records += _sequence_records(root, subject, seq, CKPLUS_CODES[code], label_files[0],
                                             cfg, reading, bad)
    _note_unlabelled_subjects(root, reading)
    return reading


def _sequences(root: Path, reading: Reading) -> list[tuple[str, str]]:
    """(subject, sequence) of every sequence folder in the image tree or the label tree.

    Folders and files that are not `S<digits>/<digits>/` are passed over by name.
    """
    keys = set()
    for top in (IMAGES, EMOTION):
        for subj in subfolders(root / top, reading, SUBJECT, "subject folders S<digits> (e.g. S005)"):
            keys |= {(subj.name, seq.name)
                     for seq in subfolders(subj, reading, SEQUENCE, "sequence folders of digits (e.g. 001)")}
    return sorted(keys, key=lambda k: (natural_key(k[0]), natural_key(k[1])))


def _note_unlabelled_subjects(root: Path, reading: Reading) -> None:
    # The full database has 123 subjects, 118 of them with a labelled sequence (datasets.md §1).
    # The others are not errors; they simply take no part in the protocol or the fold rule.
    labelled = set(reading.subjects)
    others = [p for p in entries(root / IMAGES) if p.is_dir() and SUBJECT.fullmatch(p.name)
              and p.name not in labelled]
    for p in others:
        reading.pass_over(p, "subject without a labelled sequence", PROTOCOL)
    if others:
        names = [p.name for p in others]
        reading.notes.append(f"{len(names)} subject(s) have no labelled sequence and are left out "
                             f"(not counted in the fold rule): {', '.join(names[:20])}"
                             + (" ..." if len(names) > 20 else ""))
