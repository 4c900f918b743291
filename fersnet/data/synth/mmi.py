"""MMI in its download layout (docs/datasets/mmi.md).

Sessions/<numeric id>/S001-002.avi            MJPG, 24 fps, onset -> apex -> offset
Sessions/<numeric id>/session.xml             <track view="0|1|2"> + <annotation filename=...>
Sessions/<numeric id>/S001-002.xml            <Metatag Name="Emotion" Value="N"/> + others
Sessions/<numeric id>/S001-002-oao_aucs.xml   AU onset/apex/offset markers (most sessions)

The special sessions have fixed ids (2-6) so that reader tests can name them; see
SPECIAL below and docs/synthetic.md.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

from fersnet.data.folds import assign_folds
from fersnet.data.labels import MMI_CODES
from fersnet.data.readers import opencv_path
from fersnet.data.synth import common as C
from fersnet.data.synth import render as R
from fersnet.errors import DataError

NATIVE = (720, 576)
FACE_FRAC = 0.5
FPS = 24
CODE = {name: code for code, name in MMI_CODES.items()}
SHARE = 0.45                 # share of subjects recorded in each expression (regular sessions)
AUS = {"anger": [4, 5, 7, 23], "disgust": [9, 10], "fear": [1, 2, 4, 5, 20, 26], "happy": [6, 12],
       "sadness": [1, 4, 15], "surprise": [1, 2, 5, 27], "contempt": [14]}
PROFILE_YAW = 1.25           # radians: a turned head the frontal-face cascade should not take

# session id -> (subject rank, drawn expression, emotion Value or None, view, how stored, aucs file)
# view: 0 frontal, 1 profile, 2 dual; Value 7 and a missing Emotion tag are outside 1-6.
SPECIAL = {
    2: (0, "surprise", 6, 0, "rotated", True),     # frontal, stored rotated 90 deg clockwise
    3: (1, "happy", 4, 2, "dual", True),           # frontal left half + turned view right half
    4: (2, "happy", 4, 1, "profile", True),        # profile only: the reader must drop it
    5: (3, "contempt", 7, 0, "frontal", True),     # Emotion 7: outside 1-6, dropped
    6: (4, "fear", None, 0, "frontal", False),     # no Emotion metatag: dropped
}
FIRST_REGULAR_ID = 100


def subject_ids(rng: np.random.Generator, n: int) -> list[str]:
    ids, k = [], 1
    for _ in range(n):
        ids.append(f"S{k:03d}")
        k += int(rng.integers(1, 4))
    return ids


def plan_sessions(rng: np.random.Generator, subjects: list[str], n_folds: int) -> list[dict]:
    """All sessions in id order: the fixed specials, then each subject's regular ones."""
    folds = assign_folds(subjects, n_folds)
    shows = {e: C.spread_over_folds(rng, subjects, folds, SHARE) for e in MMI_CODES.values()}
    plan = [dict(id=sid, subject=subjects[rank], expr=e, value=v, view=view, kind=kind, aucs=aucs)
            for sid, (rank, e, v, view, kind, aucs) in SPECIAL.items()]
    sid = FIRST_REGULAR_ID
    for subj in subjects:
        exprs = [e for e in MMI_CODES.values() if subj in shows[e]]
        while len(exprs) < 2:
            extra = str(rng.choice(list(MMI_CODES.values())))
            exprs += [extra] if extra not in exprs else []
        rng.shuffle(exprs)
        for e in exprs:
            plan.append(dict(id=sid, subject=subj, expr=e, value=CODE[e], view=0, kind="frontal",
                             aucs=sid != FIRST_REGULAR_ID and rng.random() > 0.1))
            sid += int(rng.integers(1, 25))
    seq_no: dict[str, int] = {}
    for s in plan:
        seq_no[s["subject"]] = seq_no.get(s["subject"], 0) + 1
        s["name"] = f"{s['subject']}-{seq_no[s['subject']]:03d}"
    return plan


def write(cfg: dict, root: Path) -> dict:
    """Write the MMI stand-in under root; returns a summary."""
    sc, seed = cfg["synth"], cfg["synth"]["data_seed"]
    rng = C.rng_for(seed, "mmi", 0)
    subjects = subject_ids(rng, sc["subjects"])
    plan = plan_sessions(rng, subjects, cfg["n_folds"])
    people = {s: _person(C.rng_for(seed, "mmi", 1, i)) for i, s in enumerate(subjects)}
    size = C.scaled(NATIVE, sc["image_scale"], even=True)
    n_files = 0
    for s in plan:
        folder = root / "Sessions" / str(s["id"])
        folder.mkdir(parents=True, exist_ok=True)
        ident, meta = people[s["subject"]]
        rs = C.rng_for(seed, "mmi", 2, s["id"])
        n = _write_video(folder / f"{s['name']}.avi", ident, s, size, sc["frames"], rs)
        _write_xml(folder, s, meta, n)
        n_files += 3 + s["aucs"]
    C.write_junk(root / "Sessions" / str(FIRST_REGULAR_ID), "Thumbs.db")
    special = {str(k): f"{p['name']} {p['kind']} view={p['view']} Emotion={p['value']}"
               for k, p in ((s["id"], s) for s in plan) if k in SPECIAL}
    frontal = [s for s in plan if s["view"] in (0, 2) and s["value"] in MMI_CODES]
    return dict(files=n_files + 1, subjects=len(subjects), sessions=len(plan),
                usable_sessions=len(frontal), special=special,
                frames_per_video=len(C.onset_apex_offset(sc["frames"])), size_hw=list(size))


def _person(rng: np.random.Generator):
    ident = R.random_identity(rng)
    meta = dict(Gender=str(rng.choice(["Male", "Female"])), Age=str(int(rng.integers(19, 62))),
                Glasses="No", Ethnicity=str(rng.choice(["European", "Asian", "South American"])))
    return ident, meta


def _frames(ident, s, size, frames, rng):
    """The frames of one session as stored (rotated, dual view or plain)."""
    h, w = size
    timing = C.onset_apex_offset(frames)
    if s["kind"] == "dual":
        half = (h, w // 2)
        front = C.render_sequence(ident, s["expr"], timing, half, rng, FACE_FRAC)
        side = C.render_sequence(ident, s["expr"], timing, half, rng, FACE_FRAC, yaw=PROFILE_YAW)
        for (a, _), (b, _) in zip(front, side):
            yield np.concatenate([a, b], axis=1)
        return
    yaw = PROFILE_YAW if s["kind"] == "profile" else 0.0
    for img, _ in C.render_sequence(ident, s["expr"], timing, size, rng, FACE_FRAC, yaw=yaw):
        yield cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE) if s["kind"] == "rotated" else img


def _write_video(path: Path, ident, s, size, frames, rng) -> int:
    h, w = size
    shape_wh = (h, w) if s["kind"] == "rotated" else (w, h)
    with opencv_path(path) as name:             # a folder name that is not UTF-8 would crash OpenCV
        vw = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*"MJPG"), FPS, shape_wh)
        if not vw.isOpened():
            raise DataError(f"{path}: OpenCV cannot write MJPG AVI files here")
        n = 0
        try:
            for img in _frames(ident, s, size, frames, rng):
                vw.write(img)
                n += 1
        finally:
            vw.release()
    return n


def _xml(root: ET.Element, path: Path) -> None:
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _write_xml(folder: Path, s: dict, meta: dict, n_frames: int) -> None:
    name = s["name"]
    sess = ET.Element("session", sessionId=str(s["id"]), subjectId=s["subject"][1:].lstrip("0") or "0")
    track = ET.SubElement(sess, "track", id="0", type="1", view=str(s["view"]),
                          filename=f"{name}.avi", fps=str(FPS), frames=str(n_frames))
    ET.SubElement(track, "annotation", id="1", type="2", filename=f"{name}.xml")
    if s["aucs"]:
        ET.SubElement(track, "annotation", id="2", type="1", filename=f"{name}-oao_aucs.xml")
    _xml(sess, folder / "session.xml")

    md = ET.Element("Metadata")
    if s["value"] is not None:
        ET.SubElement(md, "Metatag", Name="Emotion", Value=str(s["value"]))
    for k, v in meta.items():
        ET.SubElement(md, "Metatag", Name=k, Value=v)
    _xml(md, folder / f"{name}.xml")

    if s["aucs"]:
        # onset = first frame that moves, apex = first apex frame, offset = back to neutral (1-based)
        half = (n_frames - 3) // 2
        aus = ET.Element("ActionUnits")
        for au in AUS[s["expr"]]:
            el = ET.SubElement(aus, "ActionUnit", Number=str(au))
            for frame, typ in ((2, 1), (half + 1, 2), (n_frames, 3)):
                ET.SubElement(el, "Marker", Frame=str(frame), Type=str(typ))
        _xml(aus, folder / f"{name}-oao_aucs.xml")
