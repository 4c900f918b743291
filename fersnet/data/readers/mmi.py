"""MMI reader (Pantic et al. 2005; datasets.md §3, docs/datasets/mmi.md).

Layout of a download (`mmi-facial-expression-database_download_<date>/`):
    Sessions/<id>/S001-002.avi     the video (S<subject>-<sequence>)
    Sessions/<id>/session.xml      <track view="0|1|2" ...>: 0 frontal, 1 profile, 2 dual view
    Sessions/<id>/S001-002.xml     <Metatag Name="Emotion" Value="N"/>, N = 1..6 (anger .. surprise)
Protocol: frontal recordings (view 0, and the frontal half of view 2) with emotion 1-6,
6 classes, the middle `data.mmi.frames` frames. The frames are decoded here; which way up a
video is and which half of a dual view is frontal is decided at alignment (faces.frontal_view),
from the frame shape and face detection, never from a list.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from fersnet.data.labels import MMI_CODES
from fersnet.data.readers import PROTOCOL, BadInput, FrameRecord, Reading, entries, opencv_path, subfolders
from fersnet.errors import DataError

SESSIONS = "Sessions"
DOWNLOAD_GLOB = "mmi-facial-expression-database_download_*"
NAME = re.compile(r"^(S\d+)-(\d+)$", re.IGNORECASE)
SESSION = re.compile(r"\d+")
STILLS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
PROTOCOL_VIEWS = (0, 2)
UNLABELLED = -1      # no Emotion metatag: not an error, just outside the protocol


def find_base(root: Path) -> Path:
    """The folder holding `Sessions/`: `root` itself, a download folder inside it, or `root` = Sessions."""
    if (root / SESSIONS).is_dir():
        return root
    downloads = sorted(p for p in root.glob(DOWNLOAD_GLOB) if (p / SESSIONS).is_dir())
    if len(downloads) == 1:
        return downloads[0]
    if len(downloads) > 1:
        raise DataError(f"{root}: {len(downloads)} MMI download folders inside "
                        f"({', '.join(p.name for p in downloads)}); point the root at one of them")
    if root.name == SESSIONS:
        return root.parent
    raise DataError(f"{root}: not an MMI root: no `{SESSIONS}/` folder inside (nor in a "
                    f"`{DOWNLOAD_GLOB}` folder); expected `{SESSIONS}/<id>/` with the .avi, session.xml "
                    "and S<subject>-<sequence>.xml (docs/datasets/mmi.md)")


def _parse_xml(path: Path, bad: BadInput) -> ET.Element | None:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        bad(path, f"malformed XML ({e})")
    except OSError as e:
        bad(path, f"cannot read ({e.strerror or e})")
    return None


def track_view(session_xml: Path, video: Path, bad: BadInput) -> int | None:
    """The `view` of the session.xml track that holds `video` (0 frontal, 1 profile, 2 dual)."""
    root = _parse_xml(session_xml, bad)
    if root is None:
        return None
    tracks = [el for el in root.iter() if "view" in el.attrib]
    if not tracks:
        bad(session_xml, "no element with a `view` attribute (expected <track view=\"0|1|2\">)")
        return None
    named = [t for t in tracks if t.attrib.get("filename", "").lower() == video.name.lower()]
    views = {t.attrib["view"].strip() for t in (named or tracks)}
    if len(views) > 1:
        bad(session_xml, f"tracks with different views {sorted(views)} and none names {video.name}")
        return None
    view = views.pop()
    if view not in ("0", "1", "2"):
        bad(session_xml, f"track view {view!r} unknown; expected 0 (frontal), 1 (profile) or 2 (dual)")
        return None
    return int(view)


def emotion_code(label_xml: Path, bad: BadInput) -> int | None:
    """The Emotion metatag value; UNLABELLED when there is none, None when bad (reported)."""
    root = _parse_xml(label_xml, bad)
    if root is None:
        return None
    tags = [el for el in root.iter() if el.tag.lower() == "metatag"
            and el.attrib.get("Name", el.attrib.get("name", "")).lower() == "emotion"]
    if not tags:
        return UNLABELLED
    values = {t.attrib.get("Value", t.attrib.get("value", "")).strip() for t in tags}
    if len(values) > 1:
        bad(label_xml, f"{len(tags)} Emotion metatags with different values {sorted(values)}; expected one")
        return None
    value = values.pop()
    if not re.fullmatch(r"-?\d+", value):
        bad(label_xml, f"Emotion value {value!r} is not an integer; expected 1-6")
        return None
    code = int(value)
    if code < 0:
        bad(label_xml, f"Emotion value {code} out of range; expected 1-6 (anger .. surprise)")
        return None
    return code


def decode_middle(video: Path, n: int, bad: BadInput):
    """(middle `n` frames as (number, BGR image), first frame); None after reporting a bad video.

    The header's frame count fixes the window, so only `n` frames stay in memory; decoding
    fewer frames than the header declares means the file is truncated.
    """
    import cv2
    with opencv_path(video) as name:
        cap = cv2.VideoCapture(name)
        try:
            if not cap.isOpened():
                bad(video, "cannot open the video (corrupt, truncated or an unsupported codec)")
                return None
            declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            start = (declared - n) // 2 if declared >= n else 0
            kept, count, first = [], 0, None
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if count == 0:
                    first = frame   # neutral onset (MMI: onset-apex-offset), the fallback for face boxes
                if declared <= 0 or start <= count < start + n:
                    kept.append((count, frame))
                count += 1
        finally:
            cap.release()
    if count == 0:
        bad(video, "no decodable frame (corrupt video)")
        return None
    if declared > 0 and count < declared:
        bad(video, f"truncated video: decoded {count} of the {declared} frames its header declares")
        return None
    if count < n:
        bad(video, f"has {count} frame(s); the protocol needs the middle {n}")
        return None
    if declared <= 0:   # no usable header count: the middle of what was decoded
        mid = (count - n) // 2
        kept = kept[mid:mid + n]
    return kept, first


def _known_names(session: Path, videos: list[Path]) -> set[str]:
    """Lower-case names that belong in a session: session.xml, its videos and their annotation XMLs."""
    names = {"session.xml"}
    for v in videos:
        names |= {v.name, f"{v.stem}.xml", f"{v.stem}-oao_aucs.xml"}
    try:   # whatever session.xml itself names (a malformed one is reported when its view is read)
        names |= {el.attrib["filename"] for el in ET.parse(session / "session.xml").getroot().iter()
                  if "filename" in el.attrib}
    except (ET.ParseError, OSError):
        pass
    return {n.lower() for n in names}


def _session_videos(session: Path, reading: Reading) -> list[Path]:
    """The session's .avi videos; a session without one is passed over, and so is any stray file."""
    files = entries(session)
    videos = [p for p in files if p.is_file() and p.suffix.lower() == ".avi"]
    if not videos:
        if any(p.is_file() and p.suffix.lower() in STILLS for p in files):
            reading.pass_over(session, "session without a video (still images)", PROTOCOL)
        else:
            reading.pass_over(session, "session holds no video (.avi) and no images")
        return []
    known = _known_names(session, videos)
    for p in files:
        if p.is_dir() or p.name.lower() not in known:
            reading.foreign(p, "the session's S<subject>-<sequence>.avi videos, session.xml and the "
                               "videos' <name>.xml and <name>-oao_aucs.xml annotations")
    return videos


def _video_records(session: Path, video: Path, base: Path, n: int, reading: Reading,
                   bad: BadInput) -> list[FrameRecord]:
    name = NAME.match(video.stem)
    if not name:
        bad(video, "video name is not S<subject>-<sequence>.avi, so the subject is unknown")
        return []
    session_xml = session / "session.xml"
    if not session_xml.is_file():
        bad(session_xml, "missing; it gives the view (frontal/profile/dual) of the video")
        return []
    view = track_view(session_xml, video, bad)
    label_xml = video.with_suffix(".xml")
    code = emotion_code(label_xml, bad) if label_xml.is_file() else UNLABELLED
    if view is None or code is None:   # reported as bad
        return []
    if code == UNLABELLED:
        reading.pass_over(video, "no Emotion label (no label XML or no Emotion metatag)", PROTOCOL)
        return []
    if view not in PROTOCOL_VIEWS:
        reading.pass_over(video, "profile view (view 1)", PROTOCOL)
        return []
    if code not in MMI_CODES:
        # datasets.md §3: values above 6 are not basic emotions and are dropped by the protocol
        reading.pass_over(video, f"emotion code {code} (not 1-6)", PROTOCOL)
        return []
    decoded = decode_middle(video, n, bad)
    if decoded is None:
        return []
    frames, first = decoded
    subject = name.group(1).upper()
    reading.anchors[(subject, session.name)] = first
    return [FrameRecord(subject=subject, sequence=session.name, frame=num, expression=MMI_CODES[code],
                        source=f"{video.relative_to(base).as_posix()}#{num}", path=video,
                        pixels=img, view=view)
            for num, img in frames]


def read(cfg: dict, root: Path, bad: BadInput) -> Reading:
    """The protocol's frames of an MMI copy under `root` (videos decoded, middle frames kept)."""
    base = find_base(root)
    reading = Reading(db="mmi", base=base, strict=cfg["data"]["check_counts"] == "error")
    n = cfg["data"]["mmi"]["frames"]
    for session in subfolders(base / SESSIONS, reading, SESSION, "session folders named by a number"):
        for video in _session_videos(session, reading):
            reading.records += _video_records(session, video, base, n, reading, bad)
    return reading
