"""Readers of the native layouts on tiny hand-made trees (datasets.md §1-3)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fersnet.data import readers
from fersnet.data.readers import BadInput
from native_trees import make_ckplus, make_mmi, make_oulu


def _read(cfg, db, root, policy="error"):
    return readers.read(cfg, db, root, BadInput(policy))


def test_ckplus_reader_takes_last_frames_of_labelled_sequences_only(test_cfg, tmp_path):
    root = make_ckplus(tmp_path / "ck", {("S005", "001"): 3, ("S005", "002"): None, ("S010", "001"): 7},
                       n_frames=5)
    reading = _read(test_cfg, "ckplus", root)
    assert [(r.subject, r.sequence, r.frame, r.expression) for r in reading.records] == [
        ("S005", "001", 3, "disgust"), ("S005", "001", 4, "disgust"), ("S005", "001", 5, "disgust"),
        ("S010", "001", 3, "surprise"), ("S010", "001", 4, "surprise"), ("S010", "001", 5, "surprise")]
    first = reading.records[0]
    assert first.source == "cohn-kanade-images/S005/001/S005_001_00000003.png"
    assert first.landmarks.shape == (68, 2)
    assert first.load().shape == (48, 64, 3)
    assert reading.excluded["unlabelled sequence (no Emotion file)"] == 1


def test_ckplus_include_neutral_adds_each_sequence_first_frame(test_cfg, tmp_path):
    test_cfg["data"]["ckplus"]["include_neutral"] = True
    root = make_ckplus(tmp_path / "ck", {("S005", "001"): 1}, n_frames=5, first_frame=11)
    reading = _read(test_cfg, "ckplus", root)
    assert [(r.frame, r.expression) for r in reading.records] == [
        (11, "neutral"), (13, "anger"), (14, "anger"), (15, "anger")]


def test_ckplus_subject_without_labelled_sequence_is_left_out_of_the_folds(test_cfg, tmp_path):
    root = make_ckplus(tmp_path / "ck", {("S005", "001"): 5, ("S007", "001"): None},
                       unlabelled_subjects=("S002",))
    reading = _read(test_cfg, "ckplus", root)
    assert reading.subjects == ["S005"]
    assert any("S002" in n and "S007" in n for n in reading.notes)


def test_readers_ignore_junk_files(test_cfg, tmp_path):
    root = make_ckplus(tmp_path / "ck", {("S005", "001"): 5})
    (root / "cohn-kanade-images" / "S005" / "001" / ".DS_Store").write_bytes(b"\0\1junk")
    (root / "cohn-kanade-images" / "S005" / "001" / "notes.txt").write_text("hello")
    (root / "Emotion" / "S005" / "001" / "Thumbs.db").write_bytes(b"\0")
    (root / "Emotion" / ".DS_Store").write_bytes(b"\0")
    reading = _read(test_cfg, "ckplus", root)
    assert len(reading.records) == 3
    assert {d["file"]: d["kind"] for d in reading.passed} == {
        "Emotion/.DS_Store": "junk", "Emotion/S005/001/Thumbs.db": "junk",
        "cohn-kanade-images/S005/001/.DS_Store": "junk", "cohn-kanade-images/S005/001/notes.txt": "unexpected"}

    oulu = make_oulu(tmp_path / "oulu", subjects=("P001",), expressions=("Fear",))
    seq = oulu / "OriginalImg" / "VL" / "Strong" / "P001" / "Fear"
    (seq / "Thumbs.db").write_bytes(b"\0")
    cv2.imwrite(str(seq / "999.png"), np.zeros((8, 8), np.uint8))   # wrong extension, highest number
    reading = _read(test_cfg, "oulu", oulu)
    assert [r.frame for r in reading.records] == [1, 2, 3]


def test_oulu_frames_sort_numerically_not_lexically(test_cfg, tmp_path):
    root = make_oulu(tmp_path / "oulu", subjects=("P003",), expressions=("Surprise",), n_frames=1)
    seq = root / "OriginalImg" / "VL" / "Strong" / "P003" / "Surprise"
    img = cv2.imread(str(seq / "000.jpeg"))
    for n in (8, 9, 10, 11):
        cv2.imwrite(str(seq / f"{n}.jpeg"), img)
    reading = _read(test_cfg, "oulu", root)
    assert [r.frame for r in reading.records] == [9, 10, 11]


def test_oulu_root_may_be_the_originalimg_folder_and_params_pick_camera_and_lighting(test_cfg, tmp_path):
    root = make_oulu(tmp_path / "oulu", subjects=("P001", "P002"), expressions=("Anger", "Happiness"))
    make_oulu(tmp_path / "oulu", subjects=("P001",), expressions=("Sadness",), camera="NI", lighting="Dark")
    outer = _read(test_cfg, "oulu", root)
    inner = _read(test_cfg, "oulu", root / "OriginalImg")
    assert [r.source for r in outer.records] == [r.source for r in inner.records]
    assert outer.records[0].source == "OriginalImg/VL/Strong/P001/Anger/001.jpeg"
    assert {r.expression for r in outer.records} == {"anger", "happy"}
    assert outer.subjects == ["P001", "P002"] and outer.n_sequences == 4
    test_cfg["data"]["oulu"].update(camera="NI", lighting="Dark")
    ni = _read(test_cfg, "oulu", root)
    assert {(r.subject, r.expression) for r in ni.records} == {("P001", "sadness")}


def test_mmi_reader_keeps_labelled_frontal_and_dual_view_sessions_middle_frames(test_cfg, tmp_path):
    root = make_mmi(tmp_path / "mmi", [
        (1, "S001-001", 0, 1, "frontal"),
        (2, "S001-002", 1, 2, "frontal"),      # profile: not in the protocol
        (3, "S002-001", 2, 4, "dual"),
        (4, "S002-002", 0, None, "frontal"),   # no Emotion label
        (10, "S003-001", 0, 9, "frontal"),     # code above 6: dropped by the protocol
    ], n_frames=7)
    reading = _read(test_cfg, "mmi", root)
    assert [(r.subject, r.sequence, r.frame, r.expression, r.view) for r in reading.records] == [
        ("S001", "1", 2, "anger", 0), ("S001", "1", 3, "anger", 0), ("S001", "1", 4, "anger", 0),
        ("S002", "3", 2, "happy", 2), ("S002", "3", 3, "happy", 2), ("S002", "3", 4, "happy", 2)]
    assert reading.records[0].source == "Sessions/1/S001-001.avi#2"
    assert reading.records[3].load().shape == (96, 256, 3)
    assert sum(reading.excluded.values()) == 3


def test_mmi_root_may_be_the_download_folder_or_its_parent(test_cfg, tmp_path):
    download = "mmi-facial-expression-database_download_2019-01-01_10_00_00"
    root = make_mmi(tmp_path / "mmi", [(2, "S001-002", 0, 6, "frontal")], download=download)
    outer = _read(test_cfg, "mmi", root)
    inner = _read(test_cfg, "mmi", root / download)
    assert [r.source for r in outer.records] == [r.source for r in inner.records] == [
        "Sessions/2/S001-002.avi#2", "Sessions/2/S001-002.avi#3", "Sessions/2/S001-002.avi#4"]
    assert outer.records[0].expression == "surprise"


def test_mmi_session_with_still_images_is_left_out(test_cfg, tmp_path):
    root = make_mmi(tmp_path / "mmi", [(1, "S001-001", 0, 3, "frontal")])
    still = root / "Sessions" / "7"
    still.mkdir()
    cv2.imwrite(str(still / "S001-003.jpg"), np.zeros((8, 8), np.uint8))
    reading = _read(test_cfg, "mmi", root)
    assert reading.subjects == ["S001"] and reading.n_sequences == 1
    assert reading.excluded["session without a video (still images)"] == 1


def _synth(cfg, db):
    from fersnet.data.synth import write_database
    cfg["synth"]["frames"] = 4          # the schema's minimum keeps the generator fast
    write_database(cfg, db, cfg["synth"]["out"])
    return cfg["data"][db]["root"]


def test_ckplus_reader_reads_the_generator_output(test_cfg):
    root = _synth(test_cfg, "ckplus")
    reading = _read(test_cfg, "ckplus", root)
    assert len(reading.subjects) == test_cfg["synth"]["subjects"]
    assert reading.excluded["unlabelled sequence (no Emotion file)"] >= 1
    assert all(r.frame in (2, 3, 4) and r.landmarks.shape == (68, 2) for r in reading.records)
    assert list(Path(root).rglob(".DS_Store"))      # junk like the real archive's, read past


def test_oulu_reader_reads_the_generator_output(test_cfg):
    reading = _read(test_cfg, "oulu", _synth(test_cfg, "oulu"))
    n = test_cfg["synth"]["subjects"]
    assert len(reading.subjects) == n and reading.n_sequences == 6 * n
    assert len(reading.records) == 18 * n


def test_mmi_reader_and_preprocess_handle_the_generator_special_sessions(test_cfg):
    from fersnet.data.preprocess import preprocess
    root = _synth(test_cfg, "mmi")
    reading = _read(test_cfg, "mmi", root)
    sessions = {r.sequence for r in reading.records}
    # docs/synthetic.md: 2 rotated, 3 dual view, 4 profile, 5 Emotion 7, 6 no Emotion tag
    assert {"2", "3"} <= sessions and not {"4", "5", "6"} & sessions
    assert sum(reading.excluded.values()) == 3
    out = preprocess(test_cfg, "mmi", root=root)["out"]
    report = (Path(out) / "report.md").read_text()
    assert "Sessions/2/" in report and "stored rotated" in report
    assert "Sessions/3/" in report and "dual view, kept the left half" in report


def test_ckplus_copy_of_a_frame_is_passed_over_and_never_taken_as_a_frame(test_cfg, tmp_path):
    # "S005_001_00000005 (1).png" once parsed as frame 1, whose landmarks file does not exist
    root = make_ckplus(tmp_path / "ck", {("S005", "001"): 5})
    seq = root / "cohn-kanade-images" / "S005" / "001"
    (seq / "S005_001_00000005 (1).png").write_bytes((seq / "S005_001_00000005.png").read_bytes())
    reading = _read(test_cfg, "ckplus", root)
    assert [r.frame for r in reading.records] == [3, 4, 5]
    assert reading.passed == [{"file": "cohn-kanade-images/S005/001/S005_001_00000005 (1).png",
                               "reason": "file does not follow the CK+ naming pattern; expected "
                                         "S005_001_<8-digit frame>.png", "kind": "unexpected"}]


def test_oulu_frame_number_written_twice_is_used_once(test_cfg, tmp_path):
    root = make_oulu(tmp_path / "oulu", subjects=("P001",), expressions=("Fear",))
    seq = root / "OriginalImg" / "VL" / "Strong" / "P001" / "Fear"
    (seq / "3.jpeg").write_bytes((seq / "000.jpeg").read_bytes())
    reading = _read(test_cfg, "oulu", root)
    assert [r.source.rsplit("/", 1)[1] for r in reading.records] == ["001.jpeg", "002.jpeg", "003.jpeg"]
    assert reading.passed == [{"file": "OriginalImg/VL/Strong/P001/Fear/3.jpeg", "kind": "unexpected",
                               "reason": "same frame number as 003.jpeg; only that one is used"}]


def test_check_counts_error_stops_on_unexpected_entries_only(test_cfg, tmp_path):
    test_cfg["data"]["check_counts"] = "error"
    root = make_ckplus(tmp_path / "ck", {("S005", "001"): 5, ("S005", "002"): None})
    (root / "cohn-kanade-images" / "S005" / "001" / ".DS_Store").write_bytes(b"\0")
    reading = _read(test_cfg, "ckplus", root)     # junk and an unlabelled sequence: listed, no error
    assert [d["kind"] for d in reading.passed] == ["junk", "protocol"]
    stray = root / "Emotion" / "S005" / "001" / "S005_001_00000005_emotion.txt.bak"
    stray.write_text("3\n")
    with pytest.raises(readers.PassedOver, match=f"{stray}: file does not follow the CK\\+ naming pattern"
                                                 ".*data.check_counts is `error`"):
        _read(test_cfg, "ckplus", root)


# image decoding: validity by decoding, 16-bit samples by their real bit depth
def _gradient(h=48, w=64) -> np.ndarray:
    return (np.add.outer(np.arange(h), np.arange(w)) * 2 + 20).astype(np.uint8)     # 20 .. 240


def _with_sbit(png: bytes, bits: int) -> bytes:
    """The PNG with an sBIT chunk (significant bits of the gray channel) after IHDR."""
    import zlib
    chunk = b"sBIT" + bytes([bits])
    sbit = len(chunk[4:]).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big")
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + sbit + png[ihdr_end:]


@pytest.mark.parametrize("scale, sbit, expected", [
    (4, None, 1.0),          # 10-bit data, no sBIT: the largest value needs 10 bits
    (16, 12, 1.0),           # 12-bit data with sBIT 12
    (257, None, 1.0),        # full 16-bit range
    (4, 12, 0.25),           # sBIT wins over the values: 10-bit values in a declared 12-bit image are dark
])
def test_16_bit_png_is_scaled_by_its_real_bit_depth(tmp_path, scale, sbit, expected):
    g = _gradient()
    png = cv2.imencode(".png", g.astype(np.uint16) * scale)[1].tobytes()
    path = tmp_path / "frame.png"
    path.write_bytes(_with_sbit(png, sbit) if sbit else png)
    img = readers.read_image(path)
    assert img.dtype == np.uint8 and img.shape == (48, 64, 3)
    assert np.abs(img[..., 0].astype(float) - g * expected).max() <= 1.0


def test_10_bit_ckplus_frames_give_the_same_faces_as_8_bit_ones(test_cfg, tmp_path):
    from fersnet.data.preprocess import preprocess
    seqs = {("S005", "001"): 3, ("S010", "001"): 5, ("S011", "002"): 7}
    root8, root10 = make_ckplus(tmp_path / "ck8", seqs), make_ckplus(tmp_path / "ck10", seqs)
    for png in (root10 / "cohn-kanade-images").rglob("*.png"):
        cv2.imwrite(str(png), cv2.imread(str(png), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 4)
    preprocess(test_cfg, "ckplus", root=root8, out=tmp_path / "out8")
    preprocess(test_cfg, "ckplus", root=root10, out=tmp_path / "out10")
    faces8, faces10 = np.load(tmp_path / "out8/images.npy"), np.load(tmp_path / "out10/images.npy")
    assert faces8.shape == faces10.shape and faces8.mean() > 100
    assert np.abs(faces8.astype(int) - faces10.astype(int)).max() <= 1


@pytest.mark.parametrize("suffix", [".png", ".jpeg"])
def test_bytes_after_the_end_marker_are_accepted_and_a_cut_file_is_not(tmp_path, suffix):
    path = tmp_path / f"frame{suffix}"
    data = cv2.imencode(suffix, _gradient())[1].tobytes()
    path.write_bytes(data)
    reference = readers.read_image(path)
    path.write_bytes(data + b"appended by a camera tool \x00\x01" * 8)
    assert np.array_equal(readers.read_image(path), reference)
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(readers.BadFile, match=f"truncated {'PNG' if suffix == '.png' else 'JPEG'}"):
        readers.read_image(path)


def test_ckplus_frame_with_bytes_after_iend_is_preprocessed(test_cfg, tmp_path):
    from fersnet.data.preprocess import preprocess
    root = make_ckplus(tmp_path / "ck", {("S005", "001"): 3, ("S010", "001"): 5, ("S011", "002"): 7})
    png = root / "cohn-kanade-images/S010/001/S010_001_00000005.png"
    png.write_bytes(png.read_bytes() + b"\x00" * 7 + b"trailer")
    result = preprocess(test_cfg, "ckplus", root=root, out=tmp_path / "out")
    assert result["n_images"] == 9 and result["skipped"] == 0
