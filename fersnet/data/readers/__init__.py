"""Readers of CK+, Oulu-CASIA and MMI in their native layouts (docs/datasets/*.md).

Each reader walks one layout, picks the protocol's frames and returns a `Reading`: one
`FrameRecord` per frame (pixels are loaded later, except MMI's, which come out of a video),
the protocol's subjects (for the fold rule) and what it left out and why. Bad input goes
through a `BadInput`, which applies `preprocess.on_bad_file`: stop with a `DataError`
naming the file, or record a skip that the preprocessing report lists. Everything else a
reader does not use is passed over by name (`Reading.pass_over`) with one of three kinds:
left out by the protocol, desktop junk, or unexpected (outside the database's layout or
naming pattern); `data.check_counts: error` stops on the first unexpected one. Preprocessing adds
a fourth kind, frames whose face crop is unusable (`FACE`), under the same rule.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fersnet.errors import DataError
from fersnet.names import DATABASE as DB_NAMES

# Files the databases' own distributions and desktop tools leave around (datasets.md §1-2).
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}

# What a passed-over file or folder is (summary.json `skipped[].kind`; report.md groups by it).
BAD = "bad"                  # a file the protocol needs that cannot be used (preprocess.on_bad_file)
PROTOCOL = "protocol"        # left out by the protocol, as the database's documentation says
JUNK = "junk"                # desktop junk the real archives carry (.DS_Store, Thumbs.db)
UNEXPECTED = "unexpected"    # outside the layout or naming pattern: an error with data.check_counts: error
FACE = "face"                # a protocol frame whose face crop is unusable (face region outside the
                             # image, or blank; fersnet.data.faces): an error with data.check_counts: error


class BadFile(DataError):
    """One bad input file; the message names it and says what is wrong."""

    def __init__(self, file, reason: str):
        self.file, self.reason = str(file), reason
        super().__init__(f"{shown(file)}: {shown(reason)}")


class BadInput:
    """Applies `preprocess.on_bad_file` to every bad file: raise (`error`) or count and list (`skip`)."""

    def __init__(self, policy: str = "error"):
        if policy not in ("error", "skip"):
            raise ValueError(policy)
        self.policy = policy
        self.skipped: list[dict] = []

    def __call__(self, file, reason: str) -> None:
        if self.policy == "error":
            raise BadFile(file, reason)
        self.skipped.append({"file": str(file), "reason": shown(reason), "kind": BAD})


class PassedOver(BadFile):
    """An unexpected file or folder, raised instead of listed when data.check_counts is `error`."""

    def __init__(self, file, reason: str):
        super().__init__(file, f"{reason}; stopping because data.check_counts is `error` (with `warn` "
                               "it is passed over and listed in report.md)")


@dataclass
class FrameRecord:
    """One frame of the protocol, before alignment."""
    subject: str
    sequence: str
    frame: int
    expression: str
    source: str                            # relative to Reading.base; MMI: Sessions/<id>/<name>.avi#<frame>
    path: Path                             # the raw file (image, or the video for MMI)
    landmarks: np.ndarray | None = None    # (68, 2) x, y in pixels (CK+)
    pixels: np.ndarray | None = None       # decoded frame (MMI videos), uint8 BGR
    view: int = 0                          # MMI track view: 0 frontal, 2 dual (two views side by side)

    def load(self) -> np.ndarray:
        """The frame as uint8 BGR (H, W, 3); a corrupt or truncated file raises BadFile."""
        if self.pixels is not None:
            return self.pixels
        return read_image(self.path)


@dataclass
class Reading:
    """What a reader found under a root."""
    db: str
    base: Path                              # folder the `source` paths are relative to
    records: list[FrameRecord] = field(default_factory=list)
    # every file or folder not used, in walking order: {"file" (relative to base), "reason", "kind"}
    passed: list[dict] = field(default_factory=list)
    strict: bool = False                                 # data.check_counts == "error": unexpected -> PassedOver
    notes: list[str] = field(default_factory=list)       # things the report should say
    borrowed: int = 0                                    # detector misses that used a neighbour's box
    # first (neutral onset) frame of each sequence, (subject, sequence) -> Path or BGR image: where
    # the detector misses a strong apex in every selected frame, the neutral face still gives the box
    anchors: dict = field(default_factory=dict)

    def anchor(self, subject: str, sequence: str) -> np.ndarray | None:
        """The sequence's first frame (BGR) if the reader kept one and it decodes, else None."""
        item = self.anchors.get((subject, sequence))
        if item is None or isinstance(item, np.ndarray):
            return item
        try:
            return read_image(item)
        except BadFile:
            return None   # a bad first frame is not part of the protocol; just no fallback box

    def pass_over(self, path: Path, reason: str, kind: str = UNEXPECTED) -> None:
        """Record a file or folder the reader does not use; an unexpected one (or an unusable face
        crop) raises when strict."""
        if kind in (UNEXPECTED, FACE) and self.strict:
            raise PassedOver(path, reason)
        self.passed.append({"file": self.relative(path), "reason": shown(reason), "kind": kind})

    def foreign(self, path: Path, expected: str) -> None:
        """Pass over an entry that is not part of the layout: desktop junk, or unexpected."""
        if is_junk(path):
            self.pass_over(path, "desktop junk file", JUNK)
        else:
            what = "folder" if path.is_dir() else "file"
            self.pass_over(path, f"{what} does not follow the {DB_NAMES[self.db]} naming pattern; "
                                 f"expected {expected}")

    def relative(self, path) -> str:
        """`path` relative to base, as text any file can hold (shown: non-UTF-8 bytes as \\xNN)."""
        path = Path(path)
        try:
            return shown(path.relative_to(self.base).as_posix())
        except ValueError:
            return shown(path)

    @property
    def excluded(self) -> Counter:
        """Left out by the protocol, counted by reason (not errors)."""
        return Counter(d["reason"] for d in self.passed if d["kind"] == PROTOCOL)

    @property
    def ignored(self) -> list[str]:
        """Junk and unexpected files and folders (relative to base)."""
        return [d["file"] for d in self.passed if d["kind"] in (JUNK, UNEXPECTED)]

    @property
    def subjects(self) -> list[str]:
        """Subjects with at least one protocol sequence: the fold rule runs over these."""
        return sorted({r.subject for r in self.records})

    @property
    def n_sequences(self) -> int:
        return len({(r.subject, r.sequence) for r in self.records})


def read(cfg: dict, db: str, root, bad: BadInput) -> Reading:
    """Read database `db` under `root` with the configured protocol."""
    from fersnet import catalog
    if db not in catalog.DATABASES:
        raise DataError(f"unknown database {db!r}; allowed: {', '.join(catalog.DATABASES)}")
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: database root not found (params data.{db}.root or --root)")
    if not root.is_dir():
        raise DataError(f"{root}: database root is not a folder")
    reader = catalog.load(catalog.database(db).reader, f"database {db}")
    if getattr(reader, "shared", False):       # one reader for several databases (readers/generic.py)
        return reader(cfg, root, bad, db=db)
    return reader(cfg, root, bad)


def is_junk(path: Path) -> bool:
    """True for desktop junk: .DS_Store, Thumbs.db, desktop.ini and macOS `._*` companions."""
    return path.name.lower() in JUNK_NAMES or path.name.startswith("._")


def natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def entries(folder: Path) -> list[Path]:
    """A folder's entries sorted with numbers compared as numbers (S5 < S10), ties by name (003 < 3)."""
    return sorted(folder.iterdir(), key=lambda p: (natural_key(p.name), p.name))


def subfolders(folder: Path, reading: Reading, name: re.Pattern, expected: str) -> list[Path]:
    """Sub-folders whose whole name matches `name`; every other entry is passed over by name."""
    kept = []
    for p in entries(folder):
        if p.is_dir() and name.fullmatch(p.name):
            kept.append(p)
        else:
            reading.foreign(p, expected)
    return kept


def numbered_frames(folder: Path, reading: Reading, name: re.Pattern, expected: str) -> list[tuple[int, Path]]:
    """Frames of a sequence folder, sorted by number (never lexically).

    Only files whose whole name matches `name` (group 1 = the frame number) are frames; anything
    else, such as a copy `S005_001_00000011 (1).png`, is passed over by name, never taken as a frame.
    """
    frames: dict[int, Path] = {}
    for p in entries(folder):
        m = name.fullmatch(p.name) if p.is_file() else None
        if not m:
            reading.foreign(p, expected)
        elif int(m.group(1)) in frames:
            reading.pass_over(p, f"same frame number as {frames[int(m.group(1))].name}; only that one is used")
        else:
            frames[int(m.group(1))] = p
    return sorted(frames.items())


def shown(path) -> str:
    """A path, name or message as text that any file can hold: bytes of a file name that are not
    UTF-8 (which Python keeps as surrogate escapes) are written as `\\xNN`."""
    text = str(path)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:           # a lone surrogate that no file name decodes to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@contextmanager
def opencv_path(path):
    """A name under which OpenCV can open `path` (VideoCapture, VideoWriter, imwrite): the path
    itself, or, when its bytes are not UTF-8 (OpenCV crashes the process on such a name), a symbolic
    link with a plain name in a temporary folder, removed on the way out."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield text
        return
    suffix = Path(path).suffix if Path(path).suffix.isascii() else ""
    with tempfile.TemporaryDirectory(prefix="fersnet-") as folder:
        link = Path(folder) / f"file{suffix}"
        os.symlink(os.path.abspath(path), link)
        yield str(link)


_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def _undecodable(path: Path, data: bytes) -> str | None:
    """Why Pillow cannot decode `data` completely, or None when it can.

    Validity is decided by decoding, not by looking at the last bytes: a PNG's chunk checksums
    are verified up to IEND (Pillow's verify) and every pixel is decoded (load), so a file cut
    short is refused while bytes after the end marker, which some tools append, are not.
    (OpenCV, which gives the pixels, decodes a truncated JPEG with only a warning and grey fill.)
    """
    import io

    from PIL import Image, UnidentifiedImageError
    what = _FORMAT.get(path.suffix.lower(), "image")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except UnidentifiedImageError:
        return f"corrupt {what} (not an image file that can be decoded)"
    except Exception as e:  # noqa: BLE001 - any decoder failure on these bytes means a bad file
        detail = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        if "truncat" in detail.lower():
            return f"truncated {what} (the file ends before its image data does)"
        return f"corrupt {what} ({detail})"
    return None


def _png_sbit(data: bytes) -> int | None:
    """Significant bits per sample from a PNG's sBIT chunk (the largest over the colour channels),
    or None when the file has none. The chunk, when present, comes before the image data."""
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"sBIT":
            values = data[pos + 8:pos + 8 + length]
            colour = values[:3] if length >= 3 else values[:1]   # alpha (last byte of 2 or 4) left out
            return max(colour) if colour else None
        if kind in (b"IDAT", b"IEND"):
            return None
        pos += 12 + length
    return None


def bit_depth(img: np.ndarray, data: bytes) -> int:
    """The real bit depth of 16-bit samples (docs/decisions.md): the PNG's sBIT chunk where it has
    one, else the bit length of the largest value rounded up to an even depth (10, 12, 14, 16:
    those of camera sensors), at least 8."""
    sbit = _png_sbit(data) if data[:8] == b"\x89PNG\r\n\x1a\n" else None
    if sbit is not None and 1 <= sbit <= 16:
        return int(sbit)
    bits = max(8, int(img.max()).bit_length())
    return bits + bits % 2


def to_uint8(img: np.ndarray, data: bytes) -> np.ndarray:
    """16-bit samples scaled by their real bit depth to 0-255 (a 10-bit image is not made
    near-black by dropping the low byte, as OpenCV does)."""
    if img.dtype == np.uint8:
        return img
    top = float(2 ** bit_depth(img, data) - 1)
    return np.clip(np.rint(img.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


def read_image(path: Path) -> np.ndarray:
    """A PNG/JPEG as uint8 BGR (H, W, 3); gray and 16-bit inputs are converted. Raises BadFile."""
    import cv2
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BadFile(path, f"cannot read ({e.strerror or e})") from None
    if not data:
        raise BadFile(path, "empty file")
    problem = _undecodable(Path(path), data)
    if problem:
        raise BadFile(path, problem)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if img is None or img.size == 0:
        raise BadFile(path, "corrupt image (OpenCV cannot decode it)")
    return to_uint8(img, data)
