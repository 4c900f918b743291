"""`fersnet preprocess`: alignment, outputs, count check and every kind of bad input."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from fersnet import cli, ownership
from fersnet.data import faces
from fersnet.data.dataset import META_COLUMNS, load_processed
from fersnet.data.preprocess import preprocess
from fersnet.errors import DataError
from native_trees import (blank_frame, emotion_xml, make_ckplus, make_mmi, make_oulu, session_xml,
                          shape68, write_landmarks)

ROOT = Path(__file__).resolve().parents[1]


def _ck(tmp_path, n_frames=5, **seqs):
    seqs = seqs or {("S005", "001"): 3, ("S010", "001"): 5, ("S011", "002"): 7}
    return make_ckplus(tmp_path / "raw" / "ck", seqs, n_frames=n_frames)


def _out(cfg):
    return Path(cfg["preprocess"]["out"]) / "db"


def _first_png(root):
    return sorted((root / "cohn-kanade-images").rglob("*.png"))[-1]


# alignment
def test_landmark_alignment_levels_the_eyes_and_fixes_their_distance():
    pts = np.array(shape68((30.0, 50.0), (80.0, 70.0)))   # tilted 22 degrees
    m = faces.landmark_transform(pts, size=40, margin=0.25)
    a, b = (m[:, :2] @ e + m[:, 2] for e in faces.eye_centres(pts))
    assert a[1] == pytest.approx(b[1], abs=1e-9)
    assert b[0] - a[0] == pytest.approx(40 * faces.EYE_DIST_FRAC / 1.25)
    assert (a[0] + b[0]) / 2 == pytest.approx(20.0)


def test_aligned_crop_puts_tilted_eye_dots_on_one_level():
    img = np.zeros((120, 160, 3), np.uint8)
    eye_a, eye_b = (50.0, 50.0), (100.0, 75.0)
    for x, y in (eye_a, eye_b):
        cv2.circle(img, (int(x), int(y)), 4, (255, 255, 255), -1)
    crop = faces.align_by_landmarks(img, shape68(eye_a, eye_b), 64, 0.25)
    gray = crop[..., 0].astype(float)
    left, right = gray[:, :32], gray[:, 32:]
    row = lambda half: (half.sum(1) * np.arange(64)).sum() / half.sum()
    assert abs(row(left) - row(right)) < 1.0


def test_inside_share_is_the_part_of_the_face_square_within_the_image():
    shape = (100, 100, 3)
    share = lambda box, margin=0.0: faces.inside_share(shape, faces.box_transform(box, 40, margin), 40, margin)
    assert share((25, 25, 50, 50)) == 1.0
    assert share((25, 25, 50, 50), margin=0.5) == 1.0          # the margin may lie past the frame
    assert 0.45 <= share((75, 25, 50, 50)) <= 0.55              # half past the right border
    assert share((300, 300, 50, 50)) == 0.0
    assert faces.blank(np.full((40, 40, 3), 77, np.uint8)) and not faces.blank(faces.warp(
        cv2.cvtColor(np.add.outer(np.arange(100), np.arange(100)).astype(np.uint8), cv2.COLOR_GRAY2BGR),
        faces.box_transform((25, 25, 50, 50), 40, 0.25), 40))


# outputs
def test_preprocess_writes_the_contract_files(test_cfg, tmp_path):
    root = _ck(tmp_path)
    out = _out(test_cfg)
    result = preprocess(test_cfg, "ckplus", root=root, out=out)
    assert sorted(p.name for p in out.iterdir()) == [
        ownership.MARKER, "contact_sheet.png", "images.npy", "meta.csv", "report.md", "summary.json"]
    data = load_processed(folder=out)
    size = test_cfg["preprocess"]["size"]
    assert data.images.shape == (9, size, size, 1) and data.images.dtype == np.uint8
    assert list(data.meta.columns) == META_COLUMNS
    assert data.classes == ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]
    assert data.meta.expression.tolist() == ["disgust"] * 3 + ["happy"] * 3 + ["surprise"] * 3
    assert data.meta.fold.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    assert set(data.meta.face) == {"landmarks"}
    counts = pd.DataFrame(data.summary["counts"])          # class x fold
    assert counts.loc["happy", "1"] == 3 and counts.values.sum() == 9
    assert result["n_images"] == 9 and not list(out.parent.glob(".db.*"))
    assert cv2.imread(str(out / "contact_sheet.png")).shape[0] > size


def test_color_output_keeps_three_channels(test_cfg, tmp_path):
    test_cfg["preprocess"]["grayscale"] = False
    preprocess(test_cfg, "ckplus", root=_ck(tmp_path), out=_out(test_cfg))
    assert np.load(_out(test_cfg) / "images.npy").shape[-1] == 3


def test_oulu_faces_are_found_by_the_detector_and_misses_follow_no_face_policy(test_cfg, tmp_path):
    root = make_oulu(tmp_path / "raw" / "oulu", subjects=("P001",), expressions=("Anger", "Fear"))
    make_oulu(tmp_path / "raw" / "oulu", subjects=("P002",), expressions=("Happiness",), faces=False)
    out = _out(test_cfg)
    preprocess(test_cfg, "oulu", root=root, out=out)
    meta = load_processed(folder=out).meta
    assert meta.groupby("subject").face.agg(set).to_dict() == {"P001": {"detector"}, "P002": {"center"}}
    summary = json.loads((out / "summary.json").read_text())
    assert [d["file"] for d in summary["no_face"]] == [
        f"OriginalImg/VL/Strong/P002/Happiness/{i:03d}.jpeg" for i in (1, 2, 3)]
    assert "P002/Happiness/003.jpeg" in (out / "report.md").read_text()

    test_cfg["preprocess"]["no_face"] = "skip"
    preprocess(test_cfg, "oulu", root=root, out=out)
    data = load_processed(folder=out)
    assert set(data.meta.subject) == {"P001"} and len(data.meta) == 6
    assert {d["action"] for d in data.summary["no_face"]} == {"skipped"}


def test_mmi_rotated_and_dual_view_videos_come_out_upright_and_frontal(test_cfg, tmp_path):
    root = make_mmi(tmp_path / "raw" / "mmi", [(1, "S001-001", 0, 1, "rotated"), (2, "S002-001", 2, 5, "dual")])
    out = _out(test_cfg)
    preprocess(test_cfg, "mmi", root=root, out=out)
    data = load_processed(folder=out)
    assert set(data.meta.face) == {"detector"} and len(data.meta) == 6
    report = (out / "report.md").read_text()
    assert "Sessions/1/S001-001.avi: stored rotated, turned ccw90" in report
    assert "Sessions/2/S002-001.avi: dual view, kept the right half" in report


def test_count_check_warns_that_the_synthetic_stand_in_is_smaller(test_cfg, tmp_path, capsys):
    root = make_ckplus(Path(test_cfg["synth"]["out"]) / "ckplus", {("S005", "001"): 2})
    result = preprocess(test_cfg, "ckplus", root=root, out=_out(test_cfg))
    err = capsys.readouterr().err
    assert "WARNING" in err and "327" in err and "synthetic stand-in" in err
    assert "counts differ" in result["count_warning"]
    assert "**WARNING" in (_out(test_cfg) / "report.md").read_text()


def test_count_check_error_mode_stops_before_writing(test_cfg, tmp_path):
    test_cfg["data"]["check_counts"] = "error"
    with pytest.raises(DataError, match="327 sequences from 118 subjects"):
        preprocess(test_cfg, "ckplus", root=_ck(tmp_path), out=_out(test_cfg))
    assert not _out(test_cfg).parent.exists()


# bad input: each is a DataError naming the file, or a listed skip
def _expect_error(cfg, db, root, match, out=None):
    with pytest.raises(DataError, match=match):
        preprocess(cfg, db, root=root, out=out or _out(cfg))


def test_missing_root_and_wrong_layouts_are_named(test_cfg, tmp_path):
    _expect_error(test_cfg, "ckplus", tmp_path / "nowhere", "nowhere: database root not found")
    root = _ck(tmp_path)
    (root / "cohn-kanade-images").rename(root / "images")
    _expect_error(test_cfg, "ckplus", root, "no `cohn-kanade-images/` folder")
    _expect_error(test_cfg, "oulu", root, "not an Oulu-CASIA root")
    _expect_error(test_cfg, "mmi", root, "not an MMI root")
    oulu = make_oulu(tmp_path / "raw" / "oulu", subjects=("P001",), camera="NI")
    _expect_error(test_cfg, "oulu", oulu, "VL/Strong: missing.*found: NI/Strong")


@pytest.mark.parametrize("content, match", [
    ("", "empty label file"),
    ("happy\n", "label is not a number"),
    ("   9.0000000e+00\n", "label 9.0000000e\\+00 out of range"),
    ("   0.0000000e+00\n", "label 0.0000000e\\+00 out of range"),
    ("nan\n", "label nan is not a finite number"),
    ("   inf\n", "label inf is not a finite number"),
    ("-Infinity\n", "label -Infinity is not a finite number"),
    ("3.0 7.0\n", "holds 2 values \\('3.0 7.0'\\); expected one emotion code"),
    ("   3.0000000e+00\n   3.0000000e+00\n", "holds 2 values"),
])
def test_bad_emotion_files_are_named(test_cfg, tmp_path, content, match):
    root = _ck(tmp_path)
    label = next((root / "Emotion" / "S010").rglob("*_emotion.txt"))
    label.write_text(content)
    _expect_error(test_cfg, "ckplus", root, f"{label.name}: {match}")


def test_corrupt_and_truncated_images_are_named(test_cfg, tmp_path):
    root = _ck(tmp_path)
    png = _first_png(root)
    png.write_bytes(b"\x89PNG not really an image")
    _expect_error(test_cfg, "ckplus", root, f"{png.name}: corrupt PNG")
    good = cv2.imencode(".png", np.zeros((48, 64), np.uint8))[1].tobytes()
    png.write_bytes(good.replace(b"IDAT", b"IDAX"))
    _expect_error(test_cfg, "ckplus", root, f"{png.name}: corrupt PNG")
    png.write_bytes(good[:len(good) // 2])
    _expect_error(test_cfg, "ckplus", root, f"{png.name}: truncated PNG")
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF                          # a damaged byte: the chunk checksum fails
    png.write_bytes(bytes(flipped))
    _expect_error(test_cfg, "ckplus", root, f"{png.name}: corrupt PNG")
    oulu = make_oulu(tmp_path / "raw" / "oulu", subjects=("P001",), expressions=("Fear",))
    jpeg = oulu / "OriginalImg" / "VL" / "Strong" / "P001" / "Fear" / "002.jpeg"
    jpeg.write_bytes(jpeg.read_bytes()[:300])
    _expect_error(test_cfg, "oulu", oulu, "002.jpeg: truncated JPEG")


def test_truncated_and_corrupt_videos_are_named(test_cfg, tmp_path):
    root = make_mmi(tmp_path / "raw" / "mmi", [(1, "S001-001", 0, 1, "frontal")], n_frames=9)
    video = root / "Sessions" / "1" / "S001-001.avi"
    data = video.read_bytes()
    video.write_bytes(data[: int(len(data) * 0.8)])
    _expect_error(test_cfg, "mmi", root, "S001-001.avi: truncated video: decoded")
    video.write_bytes(b"RIFF" + bytes(200))
    _expect_error(test_cfg, "mmi", root, "S001-001.avi: cannot open the video")


def test_sequences_shorter_than_the_protocol_are_named(test_cfg, tmp_path):
    root = _ck(tmp_path, n_frames=2)
    _expect_error(test_cfg, "ckplus", root, "S005/001: has 2 frame\\(s\\); the protocol needs 3")
    mmi = make_mmi(tmp_path / "raw" / "mmi", [(1, "S001-001", 0, 1, "frontal")], n_frames=2)
    _expect_error(test_cfg, "mmi", mmi, "has 2 frame\\(s\\); the protocol needs the middle 3")


def test_landmarks_with_the_wrong_number_of_points_are_named(test_cfg, tmp_path):
    root = _ck(tmp_path)
    lm = next((root / "Landmarks" / "S011").rglob("*_00000005_landmarks.txt"))
    write_landmarks(lm, np.zeros((66, 2)))
    _expect_error(test_cfg, "ckplus", root, f"{lm.name}: has 66 points; expected 68")
    write_landmarks(lm, np.zeros((68, 2)))
    _expect_error(test_cfg, "ckplus", root, f"{lm.name}: eye landmarks .* coincide")


def test_malformed_xml_and_bad_mmi_labels_are_named(test_cfg, tmp_path):
    root = make_mmi(tmp_path / "raw" / "mmi", [(1, "S001-001", 0, 1, "frontal")])
    session = root / "Sessions" / "1"
    (session / "session.xml").write_text("<session><track view='0'></session>")
    _expect_error(test_cfg, "mmi", root, "session.xml: malformed XML")
    (session / "session.xml").write_text(session_xml(0, "S001-001.avi"))
    (session / "S001-001.xml").write_text(emotion_xml("two"))
    _expect_error(test_cfg, "mmi", root, "S001-001.xml: Emotion value 'two' is not an integer")
    (session / "S001-001.xml").write_text(emotion_xml(-3))
    _expect_error(test_cfg, "mmi", root, "S001-001.xml: Emotion value -3 out of range")


def test_subject_with_no_labelled_sequence_is_named(test_cfg, tmp_path):
    root = make_oulu(tmp_path / "raw" / "oulu", subjects=("P001",))
    (root / "OriginalImg" / "VL" / "Strong" / "P002").mkdir()
    _expect_error(test_cfg, "oulu", root, "P002: subject has no labelled sequence")


def test_unknown_expression_folder_is_named(test_cfg, tmp_path):
    root = make_oulu(tmp_path / "raw" / "oulu", subjects=("P001",), expressions=("Anger", "Happy"))
    _expect_error(test_cfg, "oulu", root, "P001/Happy: unknown expression folder")


def test_skip_policy_counts_and_lists_bad_files_and_keeps_the_rest(test_cfg, tmp_path):
    test_cfg["preprocess"]["on_bad_file"] = "skip"
    root = _ck(tmp_path)
    _first_png(root).write_bytes(b"garbage")
    next((root / "Emotion" / "S005").rglob("*_emotion.txt")).write_text("")
    out = _out(test_cfg)
    result = preprocess(test_cfg, "ckplus", root=root, out=out)
    # 2 bad files, and S005, whose only sequence had the bad label, has no labelled sequence left
    assert result["skipped"] == 3 and result["n_images"] == 5
    summary = json.loads((out / "summary.json").read_text())
    reasons = sorted(d["reason"] for d in summary["skipped"] if d["kind"] == "bad")
    assert reasons[0].startswith("corrupt PNG") and reasons[1].startswith("empty label file")
    assert "Skipped bad files (2)" in (out / "report.md").read_text()


def test_failed_run_keeps_the_previous_output_and_leaves_no_partial_folder(test_cfg, tmp_path):
    root = _ck(tmp_path)
    out = _out(test_cfg)
    preprocess(test_cfg, "ckplus", root=root, out=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _first_png(root).write_bytes(b"garbage")
    _expect_error(test_cfg, "ckplus", root, "corrupt PNG", out=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == [ownership.MARKER, "db"]


def test_output_inside_the_raw_root_is_refused(test_cfg, tmp_path):
    root = _ck(tmp_path)
    _expect_error(test_cfg, "ckplus", root, "must lie outside the database root", out=root / "processed")
    assert not (root / "processed").exists()


def test_cli_preprocess_runs_on_a_copy_anywhere_and_names_bad_files(tmp_path, capsys):
    root = _ck(tmp_path)
    out = tmp_path / "elsewhere" / "ck"
    argv = ["preprocess", "--params", str(ROOT / "params.yaml"), "--profile", "test", "--db", "ckplus",
            "--root", str(root), "--out", str(out)]
    assert cli.main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["n_images"] == 9
    capsys.readouterr()
    png = _first_png(root)
    png.write_bytes(b"garbage")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert str(png) in err and "Traceback" not in err


def test_apex_frames_without_a_detection_borrow_the_box_of_the_neutral_first_frame(test_cfg, tmp_path):
    root = make_oulu(tmp_path / "raw" / "oulu", subjects=("P001",), expressions=("Surprise",))
    seq = root / "OriginalImg" / "VL" / "Strong" / "P001" / "Surprise"
    for i in (1, 2, 3):
        cv2.imwrite(str(seq / f"{i:03d}.jpeg"), blank_frame())
    out = _out(test_cfg)
    preprocess(test_cfg, "oulu", root=root, out=out)
    data = load_processed(folder=out)
    assert set(data.meta.face) == {"detector"} and data.summary["borrowed_boxes"] == 3
    assert data.summary["no_face"] == []


def test_preprocess_is_deterministic(test_cfg, tmp_path):
    root = make_oulu(tmp_path / "raw" / "oulu", subjects=("P001", "P002"), expressions=("Fear",))
    first, second = tmp_path / "a", tmp_path / "b"
    preprocess(test_cfg, "oulu", root=root, out=first)
    preprocess(test_cfg, "oulu", root=root, out=second)
    for name in ("images.npy", "meta.csv", "contact_sheet.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_a_root_whose_path_is_not_utf8_is_read_and_named_escaped(tmp_path):
    # OpenCV crashed the process (SIGSEGV) opening a video under such a folder; run the CLI apart
    import os
    import subprocess
    import sys
    plain = make_mmi(tmp_path / "plain", [(1, "S001-001", 0, 1, "frontal"), (2, "S002-001", 0, 2, "frontal")],
                     n_frames=5)
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))      # Latin-1, not UTF-8
    folder.mkdir()
    root = plain.rename(folder / "mmi")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "fersnet", "preprocess", "--params", str(ROOT / "params.yaml"),
                           "--profile", "test", "--db", "mmi", "--root", os.fsencode(root), "--out", str(out)],
                          capture_output=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = (out / "report.md").read_bytes().decode("utf-8")
    assert "caf\\xe9/mmi" in report and len(np.load(out / "images.npy")) == 6
