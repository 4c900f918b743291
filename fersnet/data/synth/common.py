"""Pieces shared by the three database writers: seeding, sequences, poses, file writing."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fersnet import catalog
from fersnet.data.readers import opencv_path
from fersnet.data.synth import render as R
from fersnet.errors import DataError


# Magic bytes of the junk files the real archives carry (macOS Finder, Windows thumbnails).
JUNK = {".DS_Store": b"\x00\x00\x00\x01Bud1" + bytes(26),
        "Thumbs.db": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(24)}


# every deformation component, in a fixed order (a set's order would vary with PYTHONHASHSEED
# and so would the draws assigned to each component)
COMPONENTS = sorted({k for apex in R.APEX.values() for k in apex})


def rng_for(seed: int, db: str, *ids: int) -> np.random.Generator:
    """An independent stream per (seed, database, subject, sequence, ...): the output of one
    subject does not depend on how many others are written before it."""
    return np.random.default_rng([int(seed), catalog.database(db).synth_code, *map(int, ids)])


def scaled(size_wh: tuple[int, int], scale: float, even: bool = False) -> tuple[int, int]:
    """(h, w) of a native (w, h) frame size times synth.image_scale; `even` rounds to even
    pixels (for video: codecs and chroma subsampling prefer even sizes)."""
    step = 2 if even else 1
    w, h = size_wh
    return (step * max(16 // step, round(h * scale / step)),
            step * max(16 // step, round(w * scale / step)))


def ramp(n: int) -> np.ndarray:
    """Intensities of a neutral -> apex sequence: smoothstep from 0 (first) to 1 (last)."""
    t = np.linspace(0.0, 1.0, n)
    return t * t * (3 - 2 * t)


def onset_apex_offset(frames: int) -> np.ndarray:
    """MMI timing: rise from neutral, hold the apex 3 frames, fall back to neutral.
    Length 2 * (frames // 2) + 3 (11 for frames = 8); the middle three frames are the apex."""
    rise = ramp(frames // 2 + 1)[:-1]
    return np.concatenate([rise, np.ones(3), rise[::-1]])


def sequence_setup(rng: np.random.Generator, h: int, w: int, face_frac: float, cy_frac: float = 0.48,
                   session: dict | None = None):
    """Base pose, lighting and per-sequence expression jitter of one recording.

    face_frac: face height (forehead to chin) as a fraction of the frame height.
    Pose jitter: roll +-5 degrees, a few % translation and scale.
    session: the subject's session lighting (Identity.session_light); each sequence varies it a
    little. Without it, every sequence draws its own lighting.
    """
    unit = face_frac * h / 2.7 * rng.uniform(0.92, 1.08)
    pose = R.Pose(cx=w / 2 + rng.normal(0, 0.03) * w, cy=h * cy_frac + rng.normal(0, 0.025) * h,
                  unit=unit, roll_deg=float(rng.uniform(-5, 5)))
    if session:
        gradient = float(np.clip(session["gradient"] + rng.normal(0, 0.08), -1, 1))
        vertical = float(np.clip(session["vertical"] + rng.normal(0, 0.05), -0.6, 0.6))
        gain = float(session["gain"] * (1 + rng.normal(0, 0.015)))
    else:
        gradient, vertical, gain = (float(rng.uniform(-1, 1)), float(rng.uniform(-0.6, 0.6)),
                                    float(rng.uniform(0.85, 1.1)))
    light = dict(gradient=gradient, vertical=vertical, gain=gain, cx=pose.cx, unit=unit,
                 noise_bank=R.noise_bank(rng, (h, w, 3)))
    jitter = {k: float(np.clip(rng.normal(1.0, 0.12), 0.7, 1.3))
              for k in COMPONENTS}
    return pose, light, jitter


def drift(pose: R.Pose, rng: np.random.Generator, k: int) -> R.Pose:
    """Small head motion within a sequence: roll wobble, position spread growing with time."""
    step = 0.005 * pose.unit * np.sqrt(k)
    return R.Pose(cx=pose.cx + rng.normal(0, step) if k else pose.cx,
                  cy=pose.cy + rng.normal(0, step) if k else pose.cy,
                  unit=pose.unit * (1 + rng.normal(0, 0.004)),
                  roll_deg=pose.roll_deg + rng.normal(0, 0.3), yaw=pose.yaw)


def render_sequence(ident: R.Identity, expression: str, intensities, size: tuple[int, int],
                    rng: np.random.Generator, face_frac: float, yaw: float = 0.0,
                    cy_frac: float = 0.48, setup=None):
    """Yield (BGR uint8 frame, 68 landmarks in pixels) for each intensity of one sequence."""
    h, w = size
    pose, light, jitter = setup or sequence_setup(rng, h, w, face_frac, cy_frac, ident.session_light)
    pose.yaw = yaw
    for k, a in enumerate(intensities):
        p = R.expression_params(ident, expression, float(a), jitter)
        yield R.render(ident, p, drift(pose, rng, k), (h, w), light, rng)


def imwrite(path: Path, img: np.ndarray, params=()) -> None:
    """cv2.imwrite that fails loudly (it only returns False on errors)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with opencv_path(path) as name:             # a folder name that is not UTF-8 would crash OpenCV
        if not cv2.imwrite(name, img, list(params)):
            raise DataError(f"{path}: could not write image")


def write_junk(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(JUNK[name])
    return folder / name


def spread_over_folds(rng: np.random.Generator, subjects: list[str], folds: dict[str, int],
                      share: float) -> set[str]:
    """Pick about share * len(subjects) subjects, visiting folds round-robin so that a rare
    class still reaches as many test folds as its count allows."""
    n = max(1, round(share * len(subjects)))
    by_fold: dict[int, list[str]] = {}
    for s in subjects:
        by_fold.setdefault(folds[s], []).append(s)
    for members in by_fold.values():
        rng.shuffle(members)
    order = list(by_fold)
    rng.shuffle(order)
    chosen: list[str] = []
    while len(chosen) < n:
        for f in order:
            if by_fold[f] and len(chosen) < n:
                chosen.append(by_fold[f].pop())
    return set(chosen)
