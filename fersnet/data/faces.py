"""Face finding, alignment and cropping.

Oulu-CASIA and MMI: OpenCV's frontal-face Haar cascade (shipped inside the opencv wheel,
so nothing is downloaded at run time; OpenCV 5 dropped CascadeClassifier, hence `<5`).
CK+: the database's own 68-point landmarks (eye centres -> similarity transform).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

CASCADE = "haarcascade_frontalface_default.xml"


@lru_cache(maxsize=1)
def _cascade():
    import cv2
    c = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    if c.empty():
        raise RuntimeError(f"OpenCV could not load {CASCADE} from {cv2.data.haarcascades}")
    return c


def detect_face(gray: np.ndarray, min_frac: float = 0.2) -> tuple[int, int, int, int] | None:
    """Largest frontal face in a uint8 grayscale image as (x, y, w, h), or None.

    min_frac: smallest face side as a fraction of the image's shorter side.
    """
    import cv2
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    side = int(min(gray.shape[:2]) * min_frac)
    faces = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return int(x), int(y), int(w), int(h)
