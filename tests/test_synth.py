"""`fersnet synth`: the stand-in databases in their native layouts (docs/synthetic.md).

The three databases are written once per module at the `test` profile sizes and read back
with plain file tools, as a reader of the real databases would.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from fersnet import config, ownership
from fersnet.data.faces import detect_face
from fersnet.data.folds import assign_folds
from fersnet.data.labels import CKPLUS_CODES, OULU_FOLDERS
from fersnet.data.synth import common, mmi, render, write_database
from fersnet.data.synth import main as synth_main
from fersnet.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
NUM = r"   -?\d\.\d{7}e[+-]\d\d"          # CK+ ReadMe number format


def _cfg(out: Path, **synth) -> dict:
    cfg = config.load(ROOT / "params.yaml", profile="test")
    cfg["synth"]["out"] = str(out)
    cfg["synth"].update(synth)
    return cfg


@pytest.fixture(scope="module")
def written(request, tmp_path_factory):
    """The test-profile stand-in of all three databases, and the config that wrote them.

    Under pytest-xdist the workers share one copy (written once, under a file lock)."""
    from filelock import FileLock
    base = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):
        base = base.parent
    out = base / "synth_shared"
    cfg = _cfg(out)
    with FileLock(str(out) + ".lock"):
        if not (out / "complete").exists():
            for db in ("ckplus", "oulu", "mmi"):
                write_database(cfg, db, out)
            (out / "complete").write_text("")
    return cfg, out


def _frame_hw(cfg, native_wh, even=False):
    return common.scaled(native_wh, cfg["synth"]["image_scale"], even)


def test_ckplus_frames_landmarks_and_emotion_files_follow_the_readme(written):
    cfg, out = written
    root, frames = out / "ckplus", cfg["synth"]["frames"]
    seqs = sorted(p for p in (root / "cohn-kanade-images").glob("S*/*") if p.is_dir())
    assert seqs
    unlabelled = 0
    for seq in seqs:
        subj, num = seq.parent.name, seq.name
        pngs = sorted(p.name for p in seq.glob("*.png"))
        assert pngs == [f"{subj}_{num}_{k:08d}.png" for k in range(1, frames + 1)]
        for name in pngs:
            lm = (root / "Landmarks" / subj / num / name.replace(".png", "_landmarks.txt")).read_text()
            lines = lm.splitlines()
            assert len(lines) == 68 and all(re.fullmatch(NUM + NUM, ln) for ln in lines)
        emo = sorted((root / "Emotion" / subj / num).glob("*_emotion.txt"))
        if not emo:
            unlabelled += 1
            continue
        assert [e.name for e in emo] == [f"{subj}_{num}_{frames:08d}_emotion.txt"]
        text = emo[0].read_text()
        assert re.fullmatch(NUM + "\n", text) and int(float(text)) in range(1, 8)
    assert 0 < unlabelled < len(seqs) / 2


def test_ckplus_subjects_sizes_and_colour_look_like_the_real_database(written):
    cfg, out = written
    img_root = out / "ckplus" / "cohn-kanade-images"
    subjects = sorted(p.name for p in img_root.iterdir() if p.is_dir())
    nums = [int(s[1:]) for s in subjects]
    assert len(subjects) == cfg["synth"]["subjects"]
    assert any(n >= 501 for n in nums) and nums != list(range(nums[0], nums[0] + len(nums)))
    shapes = {}
    for subj in subjects:
        first = sorted(img_root.glob(f"{subj}/*/*.png"))[0]
        shapes[subj] = cv2.imread(str(first), cv2.IMREAD_UNCHANGED).shape
    h490, w = _frame_hw(cfg, (640, 490))
    assert sum(s[:2] == (h490, w) for s in shapes.values()) >= len(subjects) - 1
    assert any(len(s) == 3 for s in shapes.values()) and any(len(s) == 2 for s in shapes.values())
    assert (img_root / ".DS_Store").is_file() and (out / "ckplus" / "Emotion" / ".DS_Store").is_file()


def test_ckplus_every_class_reaches_most_folds_and_contempt_is_rarer(written):
    cfg, out = written
    emo = list((out / "ckplus" / "Emotion").glob("S*/*/*_emotion.txt"))
    subjects = sorted(p.name for p in (out / "ckplus" / "cohn-kanade-images").iterdir() if p.is_dir())
    folds = assign_folds(subjects, cfg["n_folds"])
    by_class: dict[str, list[int]] = {}
    for e in emo:
        by_class.setdefault(CKPLUS_CODES[int(float(e.read_text()))], []).append(folds[e.parts[-3]])
    assert set(by_class) == set(CKPLUS_CODES.values()) - {"neutral"}
    for name, fs in by_class.items():
        assert len(set(fs)) >= cfg["n_folds"] // 2, name
    assert len(by_class["contempt"]) < len(by_class["surprise"])


def _read_landmarks(path: Path) -> np.ndarray:
    return np.array([[float(v) for v in ln.split()] for ln in path.read_text().splitlines()])


def test_ckplus_landmarks_put_the_eyes_on_dark_drawn_eyes_and_the_mouth_below_them(written):
    _, out = written
    root = out / "ckplus"
    checked = darker = 0
    for lm_path in sorted(root.glob("Landmarks/S*/*/*_00000001_landmarks.txt")):
        pts = _read_landmarks(lm_path)
        rel = lm_path.relative_to(root / "Landmarks")
        img = cv2.imread(str(root / "cohn-kanade-images" / str(rel).replace("_landmarks.txt", ".png")),
                         cv2.IMREAD_GRAYSCALE).astype(float)
        for eye in (pts[36:42], pts[42:48]):
            ex, ey = eye.mean(0)
            # the cheek: straight below the eye, halfway down to the nose base
            cx, cy = ex, (ey + pts[33, 1]) / 2
            eye_val = img[int(round(ey)), int(round(ex))]
            cheek_val = img[int(round(cy)) - 1:int(round(cy)) + 2, int(round(cx)) - 1:int(round(cx)) + 2].mean()
            darker += eye_val < cheek_val - 15
            checked += 1
        assert pts[36, 0] < pts[39, 0] < pts[42, 0] < pts[45, 0]      # iBUG order, image left -> right
        assert pts[27, 1] < pts[30, 1] < pts[51, 1] < pts[57, 1] < pts[8, 1]
    assert checked and darker / checked >= 0.95


def test_oulu_layout_has_both_cameras_six_expressions_and_numbered_jpegs(written):
    cfg, out = written
    base, frames = out / "oulu" / "OriginalImg", cfg["synth"]["frames"]
    h, w = _frame_hw(cfg, (320, 240))
    for cam in ("VL", "NI"):
        subjects = sorted(p.name for p in (base / cam / "Strong").iterdir() if p.is_dir())
        assert subjects == [f"P{i:03d}" for i in range(1, cfg["synth"]["subjects"] + 1)]
        for subj in subjects:
            folders = sorted(p.name for p in (base / cam / "Strong" / subj).iterdir() if p.is_dir())
            assert folders == sorted(OULU_FOLDERS)
            names = sorted(p.name for p in (base / cam / "Strong" / subj / "Anger").glob("*.jpeg"))
            assert names == [f"{k:03d}.jpeg" for k in range(frames)]
        img = cv2.imread(str(base / cam / "Strong" / "P001" / "Happiness" / "000.jpeg"))
        assert img.shape == (h, w, 3)
        spread = np.abs(img.astype(int) - img.mean(2, keepdims=True)).max()
        # VL is colour; NI is monochrome stored in 3 channels (only JPEG rounding differs)
        assert spread > 20 if cam == "VL" else spread <= 3
    assert list(base.glob("VL/Strong/*/*/Thumbs.db")) and (base / "NI" / "Strong" / "P001" / "Thumbs.db").is_file()


def _session(folder: Path):
    sess = ET.parse(folder / "session.xml").getroot()
    track = sess.find("track")
    names = [a.get("filename") for a in track.findall("annotation")]
    meta = ET.parse(folder / next(n for n in names if not n.endswith("-oao_aucs.xml"))).getroot()
    emotion = [m.get("Value") for m in meta.iter("Metatag") if m.get("Name") == "Emotion"]
    return track, names, (int(emotion[0]) if emotion else None)


def _video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_mmi_sessions_have_xml_and_avi_with_onset_apex_offset_length(written):
    cfg, out = written
    sessions = sorted((out / "mmi" / "Sessions").iterdir(), key=lambda p: int(p.name))
    n_expected = len(common.onset_apex_offset(cfg["synth"]["frames"]))
    h, w = _frame_hw(cfg, (720, 576), even=True)
    with_aucs = 0
    for folder in sessions:
        track, names, _ = _session(folder)
        avi = folder / track.get("filename")
        assert re.fullmatch(r"S\d{3}-\d{3}\.avi", avi.name) and avi.is_file()
        assert all((folder / n).is_file() for n in names)
        with_aucs += any(n.endswith("-oao_aucs.xml") for n in names)
        if folder.name in ("2", "100"):      # decode a few videos fully (they are the slow part)
            cap = cv2.VideoCapture(str(avi))
            assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n_expected
            frames = _video(avi)
            assert len(frames) == n_expected
            assert frames[0].shape == ((w, h, 3) if folder.name == "2" else (h, w, 3))
    assert len(sessions) // 2 < with_aucs < len(sessions)
    assert (out / "mmi" / "Sessions" / str(mmi.FIRST_REGULAR_ID) / "Thumbs.db").is_file()


def test_mmi_special_sessions_are_the_documented_ones(written):
    cfg, out = written
    sess = out / "mmi" / "Sessions"
    h, w = _frame_hw(cfg, (720, 576), even=True)
    expect = {"2": ("0", 6), "3": ("2", 4), "4": ("1", 4), "5": ("0", 7), "6": ("0", None)}
    for sid, (view, value) in expect.items():
        track, _, emotion = _session(sess / sid)
        assert (track.get("view"), emotion) == (view, value), sid
    rotated = _video(sess / "2" / _session(sess / "2")[0].get("filename"))[0]
    assert rotated.shape[:2] == (w, h)                      # portrait: stored rotated 90 degrees
    upright = cv2.rotate(rotated, cv2.ROTATE_90_COUNTERCLOCKWISE)
    assert detect_face(upright) is not None and detect_face(rotated) is None
    dual = _video(sess / "3" / _session(sess / "3")[0].get("filename"))
    mid = dual[len(dual) // 2]
    assert mid.shape[:2] == (h, w)
    assert detect_face(mid[:, : w // 2]) is not None        # frontal view on the left half


def test_mmi_videos_start_and_end_neutral_with_the_apex_in_the_middle(written):
    _, out = written
    to_mid = to_last = 0.0
    for folder in sorted((out / "mmi" / "Sessions").iterdir(), key=lambda p: int(p.name))[5:13]:
        frames = _video(folder / _session(folder)[0].get("filename"))
        x, y, w, h = detect_face(frames[0]) or (0, 0, frames[0].shape[1], frames[0].shape[0])

        def coarse(f):
            # the face box at 10 x 10: blind to sensor noise and the small head motion
            return cv2.resize(f[y:y + h, x:x + w], (10, 10), interpolation=cv2.INTER_AREA).astype(float)

        first = coarse(frames[0])
        to_mid += np.abs(first - coarse(frames[len(frames) // 2])).mean()
        to_last += np.abs(first - coarse(frames[-1])).mean()
    assert to_mid > 1.5 * to_last


def test_haar_cascade_finds_most_oulu_and_mmi_faces(written):
    _, out = written
    found = total = 0
    for jpeg in sorted((out / "oulu" / "OriginalImg" / "VL" / "Strong").glob("P*/*/*.jpeg"))[::2]:
        found += detect_face(cv2.imread(str(jpeg), cv2.IMREAD_GRAYSCALE)) is not None
        total += 1
    oulu_rate = found / total
    found = total = 0
    for folder in (out / "mmi" / "Sessions").iterdir():
        track, _, emotion = _session(folder)
        if track.get("view") == "0" and int(folder.name) >= mmi.FIRST_REGULAR_ID:
            for frame in _video(folder / track.get("filename"))[::3]:
                found += detect_face(frame) is not None
                total += 1
    mmi_rate = found / total
    print(f"Haar detection rate: oulu VL {oulu_rate:.3f}, mmi frontal {mmi_rate:.3f}")
    assert oulu_rate >= 0.85 and mmi_rate >= 0.85


def test_same_seed_writes_byte_identical_ckplus(written, tmp_path):
    cfg, out = written
    again = Path(write_database(cfg, "ckplus", tmp_path)["root"])
    def data_files(root):          # the ownership marker records when it was written: not data
        return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != ownership.MARKER)
    files = data_files(out / "ckplus")
    assert files == data_files(again)
    assert all((out / "ckplus" / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_another_seed_draws_other_people():
    def first_frame(seed):
        rng = common.rng_for(seed, "oulu", 1, 0)
        ident = render.random_identity(rng)
        frames = common.render_sequence(ident, "happy", [1.0], (84, 112), rng, 0.6)
        return next(frames)[0].astype(int)

    assert np.array_equal(first_frame(0), first_frame(0))
    assert np.abs(first_frame(0) - first_frame(1)).mean() > 5


def test_frames_do_not_depend_on_the_python_hash_seed():
    code = ("import hashlib; from fersnet.data.synth import common, render; "
            "rng = common.rng_for(0, 'mmi', 2, 100); ident = render.random_identity(rng); "
            "f = [i for i, _ in common.render_sequence(ident, 'fear', [0.0, 1.0], (60, 80), rng, 0.5)]; "
            "print(hashlib.sha1(b''.join(x.tobytes() for x in f)).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": h}, cwd=ROOT).stdout for h in ("1", "2")}
    assert len(digests) == 1


def test_main_replaces_an_older_database_and_leaves_no_temporary_folders(tmp_path):
    cfg = _cfg(tmp_path / "default", image_scale=0.1)
    out = tmp_path / "synthetic"
    out.mkdir()
    ownership.claim_folder(out / "mmi", "fersnet synth")       # an older stand-in: marked
    (out / "mmi" / "stale.txt").write_text("from an older run")
    result = synth_main(cfg, argparse.Namespace(db=["mmi"], out=str(out)))
    assert set(result) == {"mmi"} and result["mmi"]["subjects"] == cfg["synth"]["subjects"]
    assert sorted(p.name for p in out.iterdir()) == ["mmi"]
    assert not (out / "mmi" / "stale.txt").exists() and (out / "mmi" / "Sessions").is_dir()
    assert not (tmp_path / "default").exists()           # --out given: params synth.out unused


def test_interrupted_write_keeps_the_old_database_whole(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, image_scale=0.1)
    ownership.claim_folder(tmp_path / "oulu", "fersnet synth")
    (tmp_path / "oulu" / "complete.txt").write_text("old but whole")
    calls = {"n": 0}
    real = common.imwrite

    def interrupted(path, img, params=()):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        real(path, img, params)

    monkeypatch.setattr(common, "imwrite", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_database(cfg, "oulu", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oulu"]
    assert (tmp_path / "oulu" / "complete.txt").read_text() == "old but whole"


def test_output_that_is_a_file_is_a_clear_error(tmp_path):
    cfg = _cfg(tmp_path)
    (tmp_path / "taken").write_text("")
    with pytest.raises(DataError, match="taken.*not a folder"):
        write_database(cfg, "mmi", tmp_path / "taken")
