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


# 68-point scheme (CK+ AAM landmarks, iBUG numbering, 0-based): the two eyes.
EYE_A = slice(36, 42)      # subject's right eye, image left
EYE_B = slice(42, 48)      # subject's left eye, image right
# Canonical face square around the eyes: the inter-ocular distance (eye centres) is 0.4 of
# its side and the eye line sits 0.32 of the side from its top, close to the mean 68-point
# shape (jaw width about 2.5 eye distances). Fixing the box from the eyes alone, not from the
# landmark hull, keeps a surprised (open) mouth from shrinking the face.
EYE_DIST_FRAC = 0.4
EYE_LINE_FRAC = 0.32


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (x, y) of the image-left and image-right eye of 68 landmarks."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {pts.shape}")
    return pts[EYE_A].mean(0), pts[EYE_B].mean(0)


def landmark_transform(landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """2x3 similarity transform: source pixels -> an aligned `size` x `size` face.

    Levels the eyes, scales the eye distance to EYE_DIST_FRAC of the face square and
    places the square, enlarged by `margin` (side x (1 + margin)), in the output.
    """
    import cv2
    a, b = eye_centres(landmarks)
    dist = float(np.hypot(*(b - a)))
    if dist < 1.0:
        raise ValueError("eye centres coincide; landmarks unusable")
    angle = np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0]))
    face = dist / EYE_DIST_FRAC
    scale = size / (face * (1.0 + margin))
    mid = (a + b) / 2
    m = cv2.getRotationMatrix2D((float(mid[0]), float(mid[1])), float(angle), scale)
    # eye midpoint -> horizontally centred, EYE_LINE_FRAC of the face square from its top
    target = np.array([size / 2, size / 2 - (0.5 - EYE_LINE_FRAC) * face * scale])
    m[:, 2] = target - m[:, :2] @ mid
    return m


def warp(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Apply a source->output transform; big reductions go through an area resize (no aliasing)."""
    import cv2
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    inter = size if scale >= 1.0 else int(np.ceil(size / scale))
    m_inter = m * (inter / size)
    out = cv2.warpAffine(image, m_inter, (inter, inter), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    if inter != size:
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
    return out


def align_by_landmarks(image: np.ndarray, landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """Eye-levelled square face crop of side `size` (CK+: landmarks of the same frame)."""
    return warp(image, landmark_transform(landmarks, size, margin), size)


def box_transform(box: tuple[int, int, int, int], size: int, margin: float) -> np.ndarray:
    """2x3 transform: the detector box, made square and enlarged by `margin`, -> `size` x `size`."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + margin)
    s = size / side
    cx, cy = x + w / 2, y + h / 2
    return np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], dtype=np.float64)


def center_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """The centre square of the frame as a box (policy `preprocess.no_face: center`)."""
    h, w = image.shape[:2]
    side = min(h, w)
    return (w - side) // 2, (h - side) // 2, side, side


# A crop is kept as a face only when at least MIN_INSIDE of its face square (the crop less the
# margin) lies inside the image and the crop is not blank (pixel standard deviation of at least
# BLANK_STD grey levels). Past the frame the warp repeats the border pixels, so landmarks of
# another image size, or outside the frame, gave a flat or streaked crop that was kept as a face.
MIN_INSIDE = 0.5
BLANK_STD = 2.0


def inside_share(shape, m: np.ndarray, size: int, margin: float, n: int = 16) -> float:
    """Share of the face square of a `size` crop made by `m` (its central size / (1 + margin))
    that lies inside an image of `shape`, from an n x n grid of points mapped back to the image."""
    import cv2
    side = size / (1.0 + margin)
    g = (np.arange(n) + 0.5) / n * side + (size - side) / 2
    xx, yy = np.meshgrid(g, g)
    inv = cv2.invertAffineTransform(m)
    src = np.stack([xx.ravel(), yy.ravel()], 1) @ inv[:, :2].T + inv[:, 2]
    h, w = shape[:2]
    inside = (src[:, 0] >= 0) & (src[:, 0] <= w - 1) & (src[:, 1] >= 0) & (src[:, 1] <= h - 1)
    return float(inside.mean())


def outside(image: np.ndarray, m: np.ndarray, size: int, margin: float) -> str | None:
    """Why the crop made by `m` is no face because its face square lies mostly outside the image, else None."""
    share = inside_share(image.shape, m, size, margin)
    if share >= MIN_INSIDE:
        return None
    h, w = image.shape[:2]
    return (f"face region lies {100 * (1 - share):.0f}% outside the {w} x {h} image "
            f"(at most {100 * (1 - MIN_INSIDE):.0f}% may)")


def blank(crop: np.ndarray) -> str | None:
    """Why the crop is no face because it is blank (flat), else None."""
    std = float(crop.std())
    if std >= BLANK_STD:
        return None
    return f"blank face crop (pixel standard deviation {std:.2f}, under {BLANK_STD:g} grey levels)"


# The cascade's cost grows with the pixel count while a face of 50+ pixels is found just as
# well, so frames are searched at this shorter side at most (MMI: 576 -> 240, 5.8x fewer pixels).
DETECT_SIDE = 240


def find_face(image: np.ndarray, min_frac: float = 0.2) -> tuple[int, int, int, int] | None:
    """detect_face on a copy reduced to DETECT_SIDE (shorter side); the box in the image's own pixels."""
    import cv2
    scale = DETECT_SIDE / min(image.shape[:2])
    if scale >= 1.0:
        return detect_face(image, min_frac)
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    box = detect_face(small, min_frac)
    return None if box is None else tuple(int(round(v / scale)) for v in box)


def to_channels(image_bgr: np.ndarray, grayscale: bool) -> np.ndarray:
    """uint8 (H, W, 1) gray or (H, W, 3) RGB from an OpenCV BGR image."""
    import cv2
    if grayscale:
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)[..., None]
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)


def detect_sequence(images: list[np.ndarray], boxes: list | None = None
                    ) -> list[tuple[tuple[int, int, int, int] | None, bool]]:
    """A face box per frame of one sequence, as (box, borrowed).

    The camera and the head barely move within a sequence, so a frame where the detector
    fails (typically the apex of a strong expression) borrows the box of the nearest frame
    where it succeeded; `borrowed` marks those. (None, False) when no frame has a face.
    `boxes`: detections already made on these images (skips detecting again).
    """
    boxes = boxes if boxes is not None else [find_face(img) for img in images]
    found = [i for i, b in enumerate(boxes) if b is not None]
    out = []
    for i, b in enumerate(boxes):
        if b is not None:
            out.append((b, False))
        elif found:
            j = min(found, key=lambda k: (abs(k - i), k))
            out.append((boxes[j], True))
        else:
            out.append((None, False))
    return out


def _rotations():
    import cv2
    return {"none": None, "cw90": cv2.ROTATE_90_CLOCKWISE, "ccw90": cv2.ROTATE_90_COUNTERCLOCKWISE,
            "180": cv2.ROTATE_180}


def _transform(image: np.ndarray, choice: str) -> np.ndarray:
    import cv2
    w = image.shape[1]
    if choice == "left":
        return image[:, : w // 2]
    if choice == "right":
        return image[:, w - w // 2:]
    code = _rotations()[choice]
    return image if code is None else cv2.rotate(image, code)


def frontal_view(frames: list[np.ndarray], dual: bool) -> tuple[str, list[np.ndarray], list]:
    """Turn one MMI video's frames into frontal, upright faces: (choice, frames, face boxes).

    Dual view (MMI view 2) packs a frontal and a profile view side by side: keep the half
    where the frontal-face detector fires. Single view: some frontal videos are stored
    rotated (datasets.md §3); try the rotations, keep the one where faces are found. The
    frame shape only orders the candidates (a portrait frame tries the 90-degree turns
    first), detection decides; with no face anywhere the frames stay as they are.
    """
    if dual:
        candidates = ["left", "right"]
    else:
        h, w = frames[0].shape[:2]
        candidates = ["cw90", "ccw90", "none", "180"] if h > w else ["none", "cw90", "ccw90", "180"]
    best, best_boxes = None, None
    for choice in candidates:
        boxes = [find_face(_transform(f, choice)) for f in frames]
        hits = sum(b is not None for b in boxes)
        if hits and (best_boxes is None or hits > sum(b is not None for b in best_boxes)):
            best, best_boxes = choice, boxes
        if hits == len(frames):
            break   # every frame has a face: no later candidate can do better
    choice = best or ("left" if dual else "none")
    return choice, [_transform(f, choice) for f in frames], best_boxes or [None] * len(frames)
