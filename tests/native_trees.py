"""Tiny hand-made trees in each database's native layout (datasets.md §1-3), for reader tests.

Faces that the Haar detector must find are cut from scikit-image's bundled `astronaut`
photograph (shipped inside the wheel, nothing downloaded); CK+ frames only need
landmarks, so they are plain gradients with a 68-point shape drawn around known eyes.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

FACE_BOX = (167, 59, 112, 112)      # the astronaut's face in skimage.data.astronaut() (512 x 512)


@lru_cache(maxsize=1)
def _astronaut_face() -> np.ndarray:
    import cv2
    from skimage import data
    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    x, y, w, h = FACE_BOX
    return gray[y - 40:y + h + 40, x - 40:x + w + 40]


def face_frame(width: int = 120, height: int = 90, face: int = 60, shift: int = 0) -> np.ndarray:
    """A gray BGR frame with one detectable frontal face in the middle."""
    import cv2
    canvas = np.full((height, width), 120, np.uint8)
    f = cv2.resize(_astronaut_face(), (face, face), interpolation=cv2.INTER_AREA)
    y0, x0 = (height - face) // 2, (width - face) // 2 + shift
    canvas[y0:y0 + face, x0:x0 + face] = f
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)


def blank_frame(width: int = 120, height: int = 90, value: int = 90) -> np.ndarray:
    """A frame with no face (the detector finds nothing)."""
    yy, xx = np.mgrid[0:height, 0:width]
    g = (value + 20 * np.sin(xx / 7.0) * np.cos(yy / 5.0)).astype(np.uint8)
    return np.repeat(g[..., None], 3, -1)


def shape68(eye_a=(40.0, 40.0), eye_b=(64.0, 40.0)) -> np.ndarray:
    """A plausible 68-point shape whose eye centres (points 36-41, 42-47) are eye_a and eye_b."""
    a, b = np.asarray(eye_a, float), np.asarray(eye_b, float)
    d = np.linalg.norm(b - a)
    mid = (a + b) / 2
    t = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    eye = np.stack([0.2 * d * np.cos(t), 0.08 * d * np.sin(t)], 1)
    jaw = np.stack([np.linspace(-1.25, 1.25, 17) * d, 1.4 * d * np.sin(np.linspace(0, np.pi, 17))], 1)
    brows = np.stack([np.r_[np.linspace(-0.8, -0.2, 5), np.linspace(0.2, 0.8, 5)] * d, np.full(10, -0.3 * d)], 1)
    nose = np.stack([np.r_[np.zeros(4), np.linspace(-0.2, 0.2, 5)] * d,
                     np.r_[np.linspace(0.1, 0.6, 4), np.full(5, 0.7)] * d], 1)
    u = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    mouth = np.stack([0.45 * d * np.cos(u), 1.1 * d + 0.15 * d * np.sin(u)], 1)
    pts = np.concatenate([jaw + mid, brows + mid, nose + mid, eye + a, eye + b, mouth + mid])
    assert pts.shape == (68, 2)
    return pts


def write_landmarks(path: Path, pts: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"   {x:.7e}   {y:.7e}\n" for x, y in pts))


def make_ckplus(root: Path, sequences: dict[tuple[str, str], int | None], n_frames: int = 5,
                first_frame: int = 1, size=(64, 48), unlabelled_subjects=()) -> Path:
    """CK+ tree: sequences {(subject, seq): emotion code or None (no Emotion file)}."""
    import cv2
    w, h = size
    for (subj, seq), code in sequences.items():
        for i in range(n_frames):
            num = first_frame + i
            stem = f"{subj}_{seq}_{num:08d}"
            img = (np.add.outer(np.arange(h), np.arange(w)) * 2 + 10 * i).astype(np.uint8)
            p = root / "cohn-kanade-images" / subj / seq / f"{stem}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), img)
            write_landmarks(root / "Landmarks" / subj / seq / f"{stem}_landmarks.txt",
                            shape68((w * 0.35, h * 0.4), (w * 0.65, h * 0.4)))
        label_dir = root / "Emotion" / subj / seq
        label_dir.mkdir(parents=True, exist_ok=True)
        if code is not None:
            last = f"{subj}_{seq}_{first_frame + n_frames - 1:08d}"
            (label_dir / f"{last}_emotion.txt").write_text(f"   {float(code):.7e}\n")
    for subj in unlabelled_subjects:
        p = root / "cohn-kanade-images" / subj / "001" / f"{subj}_001_00000001.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.zeros((h, w), np.uint8))
    return root


def make_oulu(root: Path, subjects=("P001", "P002"), expressions=("Anger", "Happiness"),
              n_frames: int = 4, camera="VL", lighting="Strong", faces: bool = True) -> Path:
    """Oulu-CASIA tree under root/OriginalImg/<camera>/<lighting>/Pxxx/<Expression>/NNN.jpeg."""
    import cv2
    for s_i, subj in enumerate(subjects):
        for expr in expressions:
            folder = root / "OriginalImg" / camera / lighting / subj / expr
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n_frames):
                img = face_frame(shift=s_i) if faces else blank_frame()
                cv2.imwrite(str(folder / f"{i:03d}.jpeg"), img)
    return root


def session_xml(view: int, video: str) -> str:
    return (f'<?xml version="1.0"?>\n<session sessionId="1">\n'
            f'  <track id="0" type="video" view="{view}" filename="{video}">\n'
            f'    <annotation type="FACS" filename="{Path(video).stem}-oao_aucs.xml"/>\n'
            f'  </track>\n</session>\n')


def emotion_xml(value) -> str:
    return ('<?xml version="1.0"?>\n<Metatags>\n  <Metatag Name="Gender" Value="Female"/>\n'
            f'  <Metatag Name="Emotion" Value="{value}"/>\n</Metatags>\n')


def write_video(path: Path, frames: list[np.ndarray], fps: int = 24) -> None:
    import cv2
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def mmi_frames(n: int = 7, layout: str = "frontal") -> list[np.ndarray]:
    """Video frames: frontal, rotated (stored turned 90 degrees clockwise), dual (profile | frontal)."""
    import cv2
    frames = []
    for i in range(n):
        f = face_frame(128, 96, 64, shift=(i % 3) - 1)
        if layout == "rotated":
            f = cv2.rotate(f, cv2.ROTATE_90_CLOCKWISE)
        elif layout == "dual":
            f = np.hstack([blank_frame(128, 96), f])
        frames.append(f)
    return frames


def make_mmi(root: Path, sessions: list[tuple[int, str, int, object, str]], n_frames: int = 7,
             download: str | None = None) -> Path:
    """MMI tree: sessions [(id, 'S001-002', view, emotion value or None, layout)]."""
    base = root / download if download else root
    for sid, name, view, emotion, layout in sessions:
        folder = base / "Sessions" / str(sid)
        folder.mkdir(parents=True, exist_ok=True)
        write_video(folder / f"{name}.avi", mmi_frames(n_frames, layout))
        (folder / "session.xml").write_text(session_xml(view, f"{name}.avi"))
        if emotion is not None:
            (folder / f"{name}.xml").write_text(emotion_xml(emotion))
    return root
