"""CK+ in its native layout (docs/datasets/ckplus.md; the official Phase-1 ReadMe).

cohn-kanade-images/S005/001/S005_001_00000001.png   every frame, neutral -> peak
Landmarks/S005/001/S005_001_00000001_landmarks.txt  68 points per frame ("   x   y", %.7e)
FACS/S005/001/S005_001_0000000N_facs.txt            last frame: "AU intensity" lines
Emotion/S005/001/S005_001_0000000N_emotion.txt      last frame only, code 0-7; absent = unlabelled
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fersnet.data.folds import assign_folds
from fersnet.data.labels import CKPLUS_CODES
from fersnet.data.synth import common as C
from fersnet.data.synth import render as R

NATIVE = (640, 490)           # w, h
NATIVE_480 = (640, 480)       # a few real subjects have 640x480 frames
FACE_FRAC = 0.52

# Share of subjects showing each class. The real counts (An 45, Co 18, Di 59, Fe 25, Ha 69,
# Sa 28, Su 83 over 118 subjects) are mimicked mildly so that contempt still reaches most folds.
SHARE = {"anger": .7, "contempt": .5, "disgust": .75, "fear": .55, "happy": .85,
         "sadness": .6, "surprise": .9}
UNLABELLED_SHARE = 0.35
COLOUR_SHARE = 0.1
CODE = {name: code for code, name in CKPLUS_CODES.items()}
AUS = {"anger": [4, 5, 7, 23], "contempt": [14], "disgust": [9, 10], "fear": [1, 2, 4, 5, 20, 26],
       "happy": [6, 12], "sadness": [1, 4, 15], "surprise": [1, 2, 5, 27], "neutral": []}


def subject_ids(rng: np.random.Generator, n: int) -> list[str]:
    """Non-contiguous IDs like the real ones: S005, S010, S011, ... plus a few S5xx."""
    n_hi = max(1, n // 8)
    ids, k = [], 5
    for _ in range(n - n_hi):
        ids.append(k)
        k += int(rng.integers(1, 9))
    ids += list(range(501, 501 + n_hi))
    return [f"S{i:03d}" for i in ids]


def fmt(v: float) -> str:
    """The ReadMe's number format: 3 spaces and %.7e (e.g. '   3.0000000e+00')."""
    return f"   {v:.7e}"


def write(cfg: dict, root: Path) -> dict:
    """Write the CK+ stand-in under root; returns a summary."""
    sc, seed = cfg["synth"], cfg["synth"]["data_seed"]
    rng = C.rng_for(seed, "ckplus", 0)
    subjects = subject_ids(rng, sc["subjects"])
    folds = assign_folds(subjects, cfg["n_folds"])
    shows = {e: C.spread_over_folds(rng, subjects, folds, s) for e, s in SHARE.items()}
    colour = {subjects[2]} | {s for s in subjects if rng.random() < COLOUR_SHARE}
    img_root = root / "cohn-kanade-images"
    C.write_junk(img_root, ".DS_Store")
    C.write_junk(root / "Emotion", ".DS_Store")
    n_files, labelled, unlabelled = 2, [], []
    for si, subj in enumerate(subjects):
        r = C.rng_for(seed, "ckplus", 1, si)
        ident = R.random_identity(r)
        size = C.scaled(NATIVE_480 if si == 1 else NATIVE, sc["image_scale"])
        exprs = [e for e in SHARE if subj in shows[e]]
        if not exprs:
            exprs = [str(r.choice(list(SHARE)))]
        r.shuffle(exprs)
        seqs = [(e, True) for e in exprs]
        if r.random() < UNLABELLED_SHARE or si == 0:
            seqs.insert(int(r.integers(0, len(seqs) + 1)), (str(r.choice(list(SHARE))), False))
        numbers = np.sort(r.choice(np.arange(1, 3 * len(seqs) + 2), len(seqs), replace=False))
        for (expr, is_labelled), num in zip(seqs, numbers):
            seq = f"{num:03d}"
            rs = C.rng_for(seed, "ckplus", 2, si, num)
            top = 1.0 if is_labelled else float(rs.uniform(0.3, 0.7))
            n_files += _write_sequence(root, subj, seq, ident, expr, sc["frames"], top, size,
                                       subj in colour, is_labelled, rs)
            (labelled if is_labelled else unlabelled).append(f"{subj}/{seq}")
        if si % 3 == 0:
            C.write_junk(img_root / subj, ".DS_Store")
            n_files += 1
    return dict(files=n_files, subjects=len(subjects), sequences=len(labelled) + len(unlabelled),
                labelled=len(labelled), unlabelled=sorted(unlabelled), colour=sorted(colour),
                size_480=[subjects[1]])


def _write_sequence(root, subj, seq, ident, expr, frames, top, size, colour, is_labelled, rng) -> int:
    stem = f"{subj}_{seq}_"
    n = 0
    frames_iter = C.render_sequence(ident, expr, C.ramp(frames) * top, size, rng, FACE_FRAC, cy_frac=0.46)
    for k, (img, lm) in enumerate(frames_iter, start=1):
        name = f"{stem}{k:08d}"
        out = img if colour else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        C.imwrite(root / "cohn-kanade-images" / subj / seq / f"{name}.png", out)
        lm_path = root / "Landmarks" / subj / seq / f"{name}_landmarks.txt"
        lm_path.parent.mkdir(parents=True, exist_ok=True)
        lm_path.write_text("".join(f"{fmt(x)}{fmt(y)}\n" for x, y in lm))
        n += 2
    last = f"{stem}{frames:08d}"
    facs = root / "FACS" / subj / seq / f"{last}_facs.txt"
    facs.parent.mkdir(parents=True, exist_ok=True)
    facs.write_text("".join(f"{fmt(au)}{fmt(0.0)}\n" for au in AUS[expr]))
    n += 1
    if is_labelled:
        emo = root / "Emotion" / subj / seq / f"{last}_emotion.txt"
        emo.parent.mkdir(parents=True, exist_ok=True)
        emo.write_text(fmt(float(CODE[expr])) + "\n")
        n += 1
    return n
