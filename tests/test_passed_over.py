"""Every file or folder a reader does not use is listed by name, with its reason, in report.md.

One native tree per defect, in each layout where the defect can occur (datasets.md §1-3).
Bad files need `preprocess.on_bad_file: skip` to reach the report (with `error` they stop the
run, tests/test_preprocess.py); unexpected entries stop it with `data.check_counts: error`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fersnet import catalog, cli
from fersnet.data.preprocess import preprocess
from fersnet.data.readers import PassedOver
from native_trees import emotion_xml, make_ckplus, make_mmi, make_oulu, shape68, write_landmarks

ROOT = Path(__file__).resolve().parents[1]
CK_SEQUENCES = {("S005", "001"): 3, ("S010", "001"): 5, ("S011", "002"): 7}


def ck(tmp_path, extra=None, **kw) -> Path:
    return make_ckplus(tmp_path / "raw" / "ck", {**CK_SEQUENCES, **(extra or {})}, **kw)


def oulu(tmp_path) -> Path:
    return make_oulu(tmp_path / "raw" / "oulu", subjects=("P001", "P002"), expressions=("Anger", "Happiness"))


def mmi(tmp_path, *extra) -> Path:
    return make_mmi(tmp_path / "raw" / "mmi", [(1, "S001-001", 0, 1, "frontal"), *extra], n_frames=5)


def copy_file(root: Path, rel: str, new_name: str) -> None:
    src = root / rel
    shutil.copy(src, src.with_name(new_name))


# Each builder makes a tree with one defect; returns (db, root). The case names the entry.
def ck_unlabelled_sequence(t):
    return "ckplus", ck(t, {("S005", "002"): None})


def ck_subject_without_labelled_sequence(t):
    return "ckplus", ck(t, unlabelled_subjects=("S002",))


def ck_unreadable_emotion_file(t):
    root = ck(t)
    (root / "Emotion/S010/001/S010_001_00000005_emotion.txt").write_text("happy\n")
    return "ckplus", root


def ck_missing_landmarks(t):
    root = ck(t)
    (root / "Landmarks/S010/001/S010_001_00000005_landmarks.txt").unlink()
    return "ckplus", root


def ck_label_outside_the_classes(t):
    root = ck(t)
    (root / "Emotion/S010/001/S010_001_00000005_emotion.txt").write_text("   9.0000000e+00\n")
    return "ckplus", root


def ck_labelled_sequence_without_images(t):
    root = ck(t)
    shutil.rmtree(root / "cohn-kanade-images/S011/002")
    return "ckplus", root


def ck_emotion_file_of_a_missing_frame(t):
    root = ck(t)
    label = root / "Emotion/S010/001/S010_001_00000005_emotion.txt"
    label.rename(label.with_name("S010_001_00000009_emotion.txt"))
    return "ckplus", root


def ck_copy_of_a_frame(t):
    root = ck(t)
    copy_file(root, "cohn-kanade-images/S005/001/S005_001_00000005.png", "S005_001_00000005 (1).png")
    return "ckplus", root


def ck_label_not_finite(t):
    root = ck(t)
    (root / "Emotion/S010/001/S010_001_00000005_emotion.txt").write_text("   nan\n")
    return "ckplus", root


def ck_two_labels_in_one_file(t):
    root = ck(t)
    (root / "Emotion/S010/001/S010_001_00000005_emotion.txt").write_text("3.0 7.0\n")
    return "ckplus", root


def ck_landmarks_outside_the_frame(t):
    root = ck(t)
    write_landmarks(root / "Landmarks/S010/001/S010_001_00000005_landmarks.txt", shape68((300, 200), (340, 200)))
    return "ckplus", root


def ck_image_of_another_size_than_its_landmarks(t):
    root = ck(t)    # landmarks of a 64 x 48 frame, the image 16 x 12
    cv2.imwrite(str(root / "cohn-kanade-images/S010/001/S010_001_00000005.png"),
                (np.add.outer(np.arange(12), np.arange(16)) * 8).astype(np.uint8))
    return "ckplus", root


def ck_blank_image(t):
    root = ck(t)
    cv2.imwrite(str(root / "cohn-kanade-images/S010/001/S010_001_00000005.png"), np.full((48, 64), 128, np.uint8))
    return "ckplus", root


def ck_file_name_not_utf8(t):
    root = ck(t)
    folder = os.fsencode(root / "cohn-kanade-images/S005/001")
    with open(folder + b"/S005_001_\xff\xfe.png", "wb") as f:    # Latin-1 bytes, not UTF-8
        f.write(b"not a frame")
    return "ckplus", root


def ck_misnamed_subject_folder(t):
    root = ck(t)
    shutil.copytree(root / "cohn-kanade-images/S005", root / "cohn-kanade-images/S005 copy")
    return "ckplus", root


def ck_misnamed_emotion_file(t):
    root = ck(t)
    (root / "Emotion/S005/001/S005_001_emotion.txt").write_text("   3.0000000e+00\n")
    return "ckplus", root


def ck_desktop_junk(t):
    root = ck(t)
    (root / "cohn-kanade-images/S005/001/.DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return "ckplus", root


def oulu_other_camera(t):
    root = oulu(t)
    make_oulu(root, subjects=("P001",), expressions=("Anger",), camera="NI")
    return "oulu", root


def oulu_expression_outside_the_classes(t):
    root = oulu(t)
    make_oulu(root, subjects=("P001",), expressions=("Contempt",))
    return "oulu", root


def oulu_expression_folder_without_images(t):
    root = oulu(t)
    (root / "OriginalImg/VL/Strong/P002/Fear").mkdir()
    return "oulu", root


def oulu_subject_without_sequences(t):
    root = oulu(t)
    (root / "OriginalImg/VL/Strong/P003").mkdir()
    return "oulu", root


def oulu_blank_frame(t):
    root = oulu(t)
    cv2.imwrite(str(root / "OriginalImg/VL/Strong/P001/Anger/003.jpeg"), np.full((90, 120, 3), 90, np.uint8))
    return "oulu", root


def oulu_copy_of_a_frame(t):
    root = oulu(t)
    copy_file(root, "OriginalImg/VL/Strong/P001/Anger/003.jpeg", "003 (1).jpeg")
    return "oulu", root


def oulu_misnamed_subject_folder(t):
    root = oulu(t)
    shutil.copytree(root / "OriginalImg/VL/Strong/P002", root / "OriginalImg/VL/Strong/P002_old")
    return "oulu", root


def oulu_desktop_junk(t):
    root = oulu(t)
    (root / "OriginalImg/VL/Strong/P001/Anger/Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    return "oulu", root


def mmi_video_without_label_file(t):
    return "mmi", mmi(t, (3, "S003-001", 0, None, "frontal"))


def mmi_label_without_emotion(t):
    root = mmi(t, (3, "S003-001", 0, 2, "frontal"))
    (root / "Sessions/3/S003-001.xml").write_text('<?xml version="1.0"?>\n<Metatags>\n'
                                                  '  <Metatag Name="Gender" Value="Male"/>\n</Metatags>\n')
    return "mmi", root


def mmi_two_emotion_labels(t):
    root = mmi(t, (3, "S003-001", 0, 2, "frontal"))
    text = emotion_xml(2).replace("</Metatags>", '  <Metatag Name="Emotion" Value="5"/>\n</Metatags>')
    (root / "Sessions/3/S003-001.xml").write_text(text)
    return "mmi", root


def mmi_profile_view(t):
    return "mmi", mmi(t, (3, "S003-001", 1, 2, "frontal"))


def mmi_label_outside_the_classes(t):
    return "mmi", mmi(t, (3, "S003-001", 0, 7, "frontal"))


def mmi_missing_session_xml(t):
    root = mmi(t, (3, "S003-001", 0, 2, "frontal"))
    (root / "Sessions/3/session.xml").unlink()
    return "mmi", root


def mmi_malformed_label_xml(t):
    root = mmi(t, (3, "S003-001", 0, 2, "frontal"))
    (root / "Sessions/3/S003-001.xml").write_text(emotion_xml(2)[:-20])
    return "mmi", root


def mmi_session_of_still_images(t):
    root = mmi(t)
    (root / "Sessions/7").mkdir()
    cv2.imwrite(str(root / "Sessions/7/S001-003.jpg"), np.zeros((8, 8), np.uint8))
    return "mmi", root


def mmi_empty_session(t):
    root = mmi(t)
    (root / "Sessions/8").mkdir()
    return "mmi", root


def mmi_misnamed_session_folder(t):
    root = mmi(t)
    shutil.copytree(root / "Sessions/1", root / "Sessions/1 copy")
    return "mmi", root


def mmi_stray_file_in_a_session(t):
    root = mmi(t)
    copy_file(root, "Sessions/1/S001-001.xml", "S001-001 copy.xml")
    return "mmi", root


def mmi_desktop_junk(t):
    root = mmi(t)
    (root / "Sessions/Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    return "mmi", root


# (builder, entry relative to the reader's base, words of its reason, report section)
BAD = "Skipped bad files"
UNEXPECTED = "Unexpected files and folders"
FACE = "Unusable face crops"
PROTOCOL = "Left out by the protocol"
JUNK = "Desktop junk ignored"
CASES = [
    (ck_unlabelled_sequence, "cohn-kanade-images/S005/002", "unlabelled sequence (no Emotion file)", PROTOCOL),
    (ck_subject_without_labelled_sequence, "cohn-kanade-images/S002", "subject without a labelled sequence",
     PROTOCOL),
    (ck_unreadable_emotion_file, "Emotion/S010/001/S010_001_00000005_emotion.txt", "label is not a number", BAD),
    (ck_missing_landmarks, "Landmarks/S010/001/S010_001_00000005_landmarks.txt", "missing landmarks file", BAD),
    (ck_label_outside_the_classes, "Emotion/S010/001/S010_001_00000005_emotion.txt",
     "label 9.0000000e+00 out of range", BAD),
    (ck_label_not_finite, "Emotion/S010/001/S010_001_00000005_emotion.txt", "label nan is not a finite number", BAD),
    (ck_two_labels_in_one_file, "Emotion/S010/001/S010_001_00000005_emotion.txt", "holds 2 values ('3.0 7.0')", BAD),
    (ck_landmarks_outside_the_frame, "cohn-kanade-images/S010/001/S010_001_00000005.png",
     "face region lies 100% outside the 64 x 48 image", FACE),
    (ck_image_of_another_size_than_its_landmarks, "cohn-kanade-images/S010/001/S010_001_00000005.png",
     "outside the 16 x 12 image (at most 50% may); its landmarks do not fit this image", FACE),
    (ck_blank_image, "cohn-kanade-images/S010/001/S010_001_00000005.png", "blank face crop", FACE),
    (ck_file_name_not_utf8, "cohn-kanade-images/S005/001/S005_001_\\xff\\xfe.png",
     "file does not follow the CK+ naming pattern", UNEXPECTED),
    (ck_labelled_sequence_without_images, "cohn-kanade-images/S011/002",
     "labelled in Emotion/ but the image folder is missing", BAD),
    (ck_emotion_file_of_a_missing_frame, "Emotion/S010/001/S010_001_00000009_emotion.txt",
     "names frame 9, which is not in cohn-kanade-images/S010/001", UNEXPECTED),
    (ck_copy_of_a_frame, "cohn-kanade-images/S005/001/S005_001_00000005 (1).png",
     "does not follow the CK+ naming pattern", UNEXPECTED),
    (ck_misnamed_subject_folder, "cohn-kanade-images/S005 copy", "folder does not follow the CK+ naming pattern",
     UNEXPECTED),
    (ck_misnamed_emotion_file, "Emotion/S005/001/S005_001_emotion.txt", "does not follow the CK+ naming pattern",
     UNEXPECTED),
    (ck_desktop_junk, "cohn-kanade-images/S005/001/.DS_Store", "", JUNK),
    (oulu_other_camera, "OriginalImg/NI/Strong", "camera/lighting not selected", PROTOCOL),
    (oulu_expression_outside_the_classes, "OriginalImg/VL/Strong/P001/Contempt", "unknown expression folder", BAD),
    (oulu_expression_folder_without_images, "OriginalImg/VL/Strong/P002/Fear", "has 0 .jpeg frame(s)", BAD),
    (oulu_subject_without_sequences, "OriginalImg/VL/Strong/P003", "subject has no labelled sequence", BAD),
    (oulu_blank_frame, "OriginalImg/VL/Strong/P001/Anger/003.jpeg", "blank face crop", FACE),
    (oulu_copy_of_a_frame, "OriginalImg/VL/Strong/P001/Anger/003 (1).jpeg",
     "does not follow the Oulu-CASIA naming pattern", UNEXPECTED),
    (oulu_misnamed_subject_folder, "OriginalImg/VL/Strong/P002_old", "does not follow the Oulu-CASIA naming pattern",
     UNEXPECTED),
    (oulu_desktop_junk, "OriginalImg/VL/Strong/P001/Anger/Thumbs.db", "", JUNK),
    (mmi_video_without_label_file, "Sessions/3/S003-001.avi", "no Emotion label", PROTOCOL),
    (mmi_label_without_emotion, "Sessions/3/S003-001.avi", "no Emotion label", PROTOCOL),
    (mmi_two_emotion_labels, "Sessions/3/S003-001.xml", "2 Emotion metatags with different values ['2', '5']",
     BAD),
    (mmi_profile_view, "Sessions/3/S003-001.avi", "profile view (view 1)", PROTOCOL),
    (mmi_label_outside_the_classes, "Sessions/3/S003-001.avi", "emotion code 7 (not 1-6)", PROTOCOL),
    (mmi_missing_session_xml, "Sessions/3/session.xml", "missing; it gives the view", BAD),
    (mmi_malformed_label_xml, "Sessions/3/S003-001.xml", "malformed XML", BAD),
    (mmi_session_of_still_images, "Sessions/7", "session without a video (still images)", PROTOCOL),
    (mmi_empty_session, "Sessions/8", "session holds no video (.avi) and no images", UNEXPECTED),
    (mmi_misnamed_session_folder, "Sessions/1 copy", "folder does not follow the MMI naming pattern", UNEXPECTED),
    (mmi_stray_file_in_a_session, "Sessions/1/S001-001 copy.xml", "file does not follow the MMI naming pattern",
     UNEXPECTED),
    (mmi_desktop_junk, "Sessions/Thumbs.db", "", JUNK),
]
KIND = {BAD: "bad", UNEXPECTED: "unexpected", PROTOCOL: "protocol", JUNK: "junk", FACE: "face"}


def sections(report: str) -> dict[str, str]:
    """report.md's level-2 sections by title (without the count in brackets)."""
    out = {}
    for block in report.split("\n## ")[1:]:
        title, _, body = block.partition("\n")
        out[title.split(" (")[0]] = body
    return out


@pytest.mark.parametrize("build, entry, reason, section", CASES, ids=[c[0].__name__ for c in CASES])
def test_passed_over_entry_is_listed_by_name_in_report_and_summary(test_cfg, tmp_path, build, entry, reason,
                                                                   section):
    test_cfg["preprocess"]["on_bad_file"] = "skip"
    db, root = build(tmp_path)
    out = Path(test_cfg["preprocess"]["out"]) / db
    preprocess(test_cfg, db, root=root, out=out)
    listed = sections((out / "report.md").read_text())[section]
    assert f"`{entry}`" in listed and reason in listed
    skipped = json.loads((out / "summary.json").read_text())["skipped"]
    assert any(d["file"] == entry and reason in d["reason"] and d["kind"] == KIND[section] for d in skipped)


UNEXPECTED_CASES = [c for c in CASES if c[3] == UNEXPECTED]


@pytest.mark.parametrize("build, entry, reason, section", UNEXPECTED_CASES,
                         ids=[c[0].__name__ for c in UNEXPECTED_CASES])
def test_check_counts_error_stops_on_an_unexpected_entry_naming_it(test_cfg, tmp_path, build, entry, reason,
                                                                   section):
    test_cfg["data"]["check_counts"] = "error"
    db, root = build(tmp_path)
    with pytest.raises(PassedOver) as e:
        preprocess(test_cfg, db, root=root, out=tmp_path / "out")
    assert entry in str(e.value) and reason in str(e.value) and "data.check_counts is `error`" in str(e.value)
    assert not (tmp_path / "out").exists()


FACE_CASES = [c for c in CASES if c[3] == FACE]


@pytest.mark.parametrize("build, entry, reason, section", FACE_CASES, ids=[c[0].__name__ for c in FACE_CASES])
def test_check_counts_error_stops_on_an_unusable_face_crop_naming_it(test_cfg, tmp_path, monkeypatch, build, entry,
                                                                     reason, section):
    # The count check runs first and stops any tree smaller than the database; take this tree's
    # counts as the protocol's, as a complete copy would pass it.
    test_cfg["data"]["check_counts"] = "error"
    db, root = build(tmp_path)
    counts = (3 if db == "ckplus" else 4, 3 if db == "ckplus" else 2)
    monkeypatch.setitem(catalog.DATABASES, db, dataclasses.replace(catalog.DATABASES[db], protocol_counts=counts))
    with pytest.raises(PassedOver) as e:
        preprocess(test_cfg, db, root=root, out=tmp_path / "out")
    assert entry in str(e.value) and reason in str(e.value) and "data.check_counts is `error`" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_copy_of_a_frame_no_longer_fails_the_database(test_cfg, tmp_path):
    # Once taken as frame 1, whose landmarks file never existed, so the whole run stopped.
    db, root = ck_copy_of_a_frame(tmp_path)
    out = tmp_path / "out"
    preprocess(test_cfg, db, root=root, out=out)
    meta = (out / "meta.csv").read_text()
    assert "S005_001_00000005.png" in meta and "(1)" not in meta


def test_count_warning_says_what_was_passed_over(test_cfg, tmp_path):
    db, root = ck_unlabelled_sequence(tmp_path)
    result = preprocess(test_cfg, db, root=root, out=tmp_path / "out")
    assert "Passed over (listed in report.md): 1 x unlabelled sequence (no Emotion file)." in result["count_warning"]


def test_cli_check_counts_error_names_the_unexpected_file_without_a_traceback(tmp_path, capsys):
    db, root = ck_copy_of_a_frame(tmp_path)
    argv = ["preprocess", "--params", str(ROOT / "params.yaml"), "--profile", "test", "--db", db,
            "--root", str(root), "--out", str(tmp_path / "out"), "--set", "data.check_counts=error"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert str(root / "cohn-kanade-images/S005/001/S005_001_00000005 (1).png") in err
    assert "naming pattern" in err and "Traceback" not in err


def test_cli_non_utf8_file_name_is_listed_escaped_and_named_escaped_when_it_stops(tmp_path, capsys):
    db, root = ck_file_name_not_utf8(tmp_path)
    base = ["preprocess", "--params", str(ROOT / "params.yaml"), "--profile", "test", "--db", db,
            "--root", str(root)]
    assert cli.main(base + ["--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_bytes().decode("utf-8")       # strict: valid UTF-8
    assert "`cohn-kanade-images/S005/001/S005_001_\\xff\\xfe.png`: file does not follow" in report
    assert cli.main(base + ["--out", str(tmp_path / "out2"), "--set", "data.check_counts=error"]) == 2
    err = capsys.readouterr().err
    assert "S005_001_\\xff\\xfe.png: file does not follow the CK+ naming pattern" in err and "Traceback" not in err
