"""Oulu-CASIA NIR&VIS in its native layout (docs/datasets/oulu.md; set B "OriginalImg").

OriginalImg/{VL,NI}/Strong/P001/{Anger,...,Surprise}/000.jpeg, 001.jpeg, ...

Both cameras recorded the same session at once, so VL and NI frames share geometry and
head motion; NI has the near-infrared look (monochrome, flatter lighting) in 3 channels.
Only the Strong lighting is written (keeps synth fast; docs/synthetic.md).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fersnet.data.labels import OULU_FOLDERS
from fersnet.data.synth import common as C
from fersnet.data.synth import render as R

NATIVE = (320, 240)
FACE_FRAC = 0.6
JPEG = (cv2.IMWRITE_JPEG_QUALITY, 92)
LIGHTINGS = ("Strong",)


def near_infrared(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """NIR look: luminance only, skin brighter and flatter (active NIR illuminator), a
    little more sensor noise; stored as 3 identical channels like the real NI JPEGs."""
    g = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    g = 255.0 * (g / 255.0) ** 0.8 * 0.95 + 8.0
    g += rng.standard_normal(g.shape, dtype=np.float32) * 3.0
    g = np.clip(g + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)


def write(cfg: dict, root: Path) -> dict:
    """Write the Oulu-CASIA stand-in under root; returns a summary."""
    sc, seed = cfg["synth"], cfg["synth"]["data_seed"]
    size = C.scaled(NATIVE, sc["image_scale"])
    base = root / "OriginalImg"
    subjects = [f"P{i:03d}" for i in range(1, sc["subjects"] + 1)]
    n_files = 0
    for si, subj in enumerate(subjects):
        r = C.rng_for(seed, "oulu", 1, si)
        ident = R.random_identity(r)
        for ei, (folder, expr) in enumerate(OULU_FOLDERS.items()):
            rs = C.rng_for(seed, "oulu", 2, si, ei)
            rn = C.rng_for(seed, "oulu", 3, si, ei)
            for light in LIGHTINGS:
                vl = base / "VL" / light / subj / folder
                ni = base / "NI" / light / subj / folder
                frames = C.render_sequence(ident, expr, C.ramp(sc["frames"]), size, rs, FACE_FRAC)
                for k, (img, _) in enumerate(frames):
                    C.imwrite(vl / f"{k:03d}.jpeg", img, JPEG)
                    C.imwrite(ni / f"{k:03d}.jpeg", near_infrared(img, rn), JPEG)
                    n_files += 2
            # the real folders carry Windows thumbnail caches (Thumbs.db)
            if ei == 0 and si % 2 == 0:
                C.write_junk(base / "VL" / "Strong" / subj / folder, "Thumbs.db")
                n_files += 1
    C.write_junk(base / "NI" / "Strong" / subjects[0], "Thumbs.db")
    return dict(files=n_files + 1, subjects=len(subjects), sequences=len(subjects) * 6,
                cameras=["VL", "NI"], lightings=list(LIGHTINGS), size_hw=list(size))
