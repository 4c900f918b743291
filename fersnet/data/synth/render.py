"""Procedural faces: identities, expressions, 68 landmarks and the drawing of one frame.

A face lives in a local frame (x right, y down, unit = half the face width) and is
described by its iBUG-68 landmarks (0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes,
48-67 mouth). Every feature is drawn from those same points, so the landmark files
written for CK+ match the drawn face by construction. Expressions are the geometric
action-unit deformations of docs/synthetic.md, blended by an intensity in [0, 1].

OpenCV anti-aliasing works on 8-bit images only, so shapes are drawn as 8-bit masks
(LINE_AA, 4 fractional bits) and composited onto a float canvas.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

EXPRESSIONS = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")

# Apex deformation of each expression (units of half the face width; eye_open is relative).
# The components follow the FACS prototypes: happy AU6+12, surprise AU1+2+5+26,
# anger AU4+5+7+23, sadness AU1+4+15, disgust AU9+10, fear AU1+2+4+5+20+26, contempt R12.
APEX = {
    "neutral": {},
    "happy": dict(corner_l=.13, corner_r=.13, mouth_w=.18, mouth_open=.05, teeth=1.0,
                  cheek=1.0, lower_lid=.45, eye_open=-.2),
    "surprise": dict(brow_in_up=.14, brow_out_up=.13, eye_open=.6, mouth_open=.34,
                     mouth_round=.55, forehead=1.0),
    "anger": dict(brow_down=.1, brow_in=.07, lip_press=.85, eye_open=.05, lower_lid=.3,
                  corner_l=-.025, corner_r=-.025, glabella=1.0),
    "sadness": dict(brow_in_up=.13, brow_out_up=-.05, brow_in=.03, corner_l=-.1, corner_r=-.1,
                    eye_open=-.25, lip_press=.25, mouth_w=-.06, chin_raise=.04),
    "disgust": dict(nose_wrinkle=1.0, upper_lip=.09, brow_down=.07, brow_in=.03, eye_open=-.35,
                    lower_lid=.35, corner_l=-.035, corner_r=-.035, mouth_open=.03, glabella=.6),
    "fear": dict(brow_in_up=.13, brow_out_up=.05, brow_in=.06, eye_open=.5, mouth_w=.17,
                 mouth_open=.15, corner_l=-.05, corner_r=-.05, forehead=.6, teeth=.5),
    "contempt": dict(corner_r=.11, mouth_w=.03, lip_press=.3, dimple_r=1.0),
}

HAIR_STYLES = ("short", "fringe", "long", "side", "cropped")


@dataclass
class Identity:
    """Everything that stays fixed for one subject (shape, colours, hair, expressiveness)."""
    face_w: float
    face_l: float
    jaw: float
    eye_dx: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_gap: float
    brow_thick: float
    brow_arch: float
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_thick: float
    skin: np.ndarray            # BGR 0-255
    hair: np.ndarray
    iris: np.ndarray
    lip_tint: np.ndarray        # multiplies the skin colour
    background: np.ndarray
    hair_style: str
    hair_top: float
    amplitude: float            # how strongly this subject expresses
    rest: dict = field(default_factory=dict)            # idiosyncratic neutral offsets
    style: dict = field(default_factory=dict)           # per-expression component gains
    session_light: dict = field(default_factory=dict)   # lighting of the subject's recording session
    cache: dict = field(default_factory=dict, repr=False, compare=False)   # shapes fixed per subject


def random_identity(rng: np.random.Generator) -> Identity:
    """Draw one subject. Ranges are wide on purpose: identity varies more than expression."""
    u = rng.uniform
    # skin: a point on a light -> dark tone scale (BGR), plus a little individual tint
    tones = np.array([[185, 205, 238], [135, 165, 212], [95, 130, 185], [60, 85, 130]], float)
    t = u(0, len(tones) - 1)
    i = min(int(t), len(tones) - 2)
    skin = tones[i] + (tones[i + 1] - tones[i]) * (t - i) + rng.normal(0, 6, 3)
    hair_kind = rng.choice(4, p=[.45, .3, .15, .1])     # black, brown, blond, grey
    hair = [np.array([25, 25, 30]), np.array([30, 50, 85]), np.array([90, 150, 190]),
            np.array([150, 150, 155])][hair_kind] * u(0.8, 1.15)
    bg = np.full(3, u(60, 200)) + rng.normal(0, 12, 3)
    rest = dict(corner_l=rng.normal(0, .02), corner_r=rng.normal(0, .02),
                brow_in_up=rng.normal(0, .02), eye_open=rng.normal(0, .08),
                brow_down=rng.normal(0, .015))
    style = {e: {k: float(np.clip(rng.normal(1.0, 0.25), 0.4, 1.6)) for k in APEX[e]} for e in APEX}
    return Identity(
        face_w=u(0.92, 1.08), face_l=u(1.22, 1.42), jaw=u(0.72, 0.92),
        eye_dx=u(0.37, 0.45), eye_y=u(-0.2, -0.1), eye_w=u(0.16, 0.21), eye_h=u(0.075, 0.1),
        brow_gap=u(0.2, 0.28), brow_thick=u(0.045, 0.09), brow_arch=u(0.02, 0.07),
        nose_len=u(0.24, 0.38), nose_w=u(0.15, 0.22), mouth_y=u(0.66, 0.8), mouth_w=u(0.3, 0.4),
        lip_thick=u(0.06, 0.1), skin=np.clip(skin, 30, 250),
        hair=np.clip(hair, 10, 240), iris=np.array([u(20, 90), u(30, 80), u(30, 70)]),
        lip_tint=np.array([u(0.75, 0.85), u(0.6, 0.7), u(0.85, 0.95)]),
        background=np.clip(bg, 20, 235), hair_style=str(rng.choice(HAIR_STYLES)),
        hair_top=u(0.12, 0.3), amplitude=u(0.65, 1.15), rest=rest, style=style,
        # one recording session per subject, as in CK+/Oulu-CASIA/MMI: its sequences share the
        # lighting (common.sequence_setup adds a little per sequence), so two faces of one subject
        # differ mainly by expression and the paired L1 of FES means something (docs/synthetic.md)
        session_light=dict(gradient=u(-1, 1), vertical=u(-0.6, 0.6), gain=u(0.85, 1.1)))


def expression_params(ident: Identity, expression: str, intensity: float,
                      jitter: dict | None = None) -> dict:
    """Deformation components of one frame: subject's rest pose + scaled apex deformation."""
    out = dict(ident.rest)
    gains = ident.style.get(expression, {})
    for k, v in APEX[expression].items():
        g = gains.get(k, 1.0) * (jitter or {}).get(k, 1.0)
        out[k] = out.get(k, 0.0) + v * g * ident.amplitude * intensity
    return out


def _smooth_arc(x0, x1, y, h, n, power=1.0):
    """Points of an arc from x0 to x1 bulging by h (negative h bulges up)."""
    t = np.linspace(0.0, 1.0, n)
    return np.stack([x0 + (x1 - x0) * t, y + h * np.sin(np.pi * t) ** power], 1)


def _eye_curves(ident: Identity, side: int, p: dict):
    """Dense upper and lower lid curves of one eye (outer -> inner) in local units."""
    ex, ey = side * ident.eye_dx, ident.eye_y
    w = ident.eye_w
    h = ident.eye_h * max(0.15, 1.0 + p.get("eye_open", 0.0))
    lower = ident.eye_h * 0.75 * max(0.1, 1.0 - p.get("lower_lid", 0.0) + 0.3 * max(0.0, p.get("eye_open", 0.0)))
    x_out, x_in = ex + side * w, ex - side * w
    upper = _smooth_arc(x_out, x_in, ey, -h, 17, 0.8)
    low = _smooth_arc(x_out, x_in, ey, lower, 17, 1.0)
    return upper, low


def landmarks(ident: Identity, p: dict) -> np.ndarray:
    """The 68 iBUG points (local units) of a face with deformation p."""
    pts = np.zeros((68, 2))
    g = p.get
    # jaw 0-16: lower half of the face oval, from eye level on the image left round the chin
    th = np.pi + 0.12 - np.arange(17) * (np.pi + 0.24) / 16
    drop = g("mouth_open", 0.0) * 0.55
    for i, t in enumerate(th):
        s = max(0.0, np.sin(t))
        x = ident.face_w * np.cos(t) * (1.0 - (1.0 - ident.jaw) * s ** 2)
        y = ident.face_l * np.sin(t) + drop * s ** 3 - g("chin_raise", 0.0) * s ** 4
        pts[i] = x, y
    # brows 17-21 (image left, outer -> inner) and 22-26 (inner -> outer)
    for side, idx in ((-1, range(17, 22)), (1, range(26, 21, -1))):
        base = ident.eye_y - ident.brow_gap
        inner = side * (0.1 + max(0.0, ident.eye_dx - ident.eye_w - 0.12)) - side * g("brow_in", 0.0)
        outer = side * (ident.eye_dx + ident.eye_w + 0.09)
        for j, i in enumerate(idx):            # j=0 outer .. 4 inner
            t = j / 4.0
            x = outer + (inner - outer) * t
            arch = ident.brow_arch * np.sin(np.pi * (0.35 + 0.65 * (1 - t)) * 0.9)
            y = base - arch + 0.03 * t
            y -= g("brow_in_up", 0.0) * t ** 1.5 + g("brow_out_up", 0.0) * (1 - t)
            y += g("brow_down", 0.0) * (0.6 + 0.4 * t)
            pts[i] = x, y
    # nose 27-30 bridge, 31-35 base
    top = ident.eye_y - 0.02
    tip = ident.eye_y + ident.nose_len + 0.22
    lift = 0.25 * g("upper_lip", 0.0) + 0.02 * g("nose_wrinkle", 0.0)
    for j in range(4):
        pts[27 + j] = 0.0, top + (tip - top) * j / 3 - lift * j / 3
    nb = tip + 0.07 - lift
    nw = ident.nose_w * (1 + 0.15 * g("nose_wrinkle", 0.0))
    for j, (fx, dy) in enumerate(((-1, -.035), (-.5, -.005), (0, .01), (.5, -.005), (1, -.035))):
        pts[31 + j] = fx * nw, nb + dy
    pts[48:68] = _mouth(ident, p)
    pts[36:48] = _eye_points(ident, p)
    return pts


def _eye_points(ident, p):
    out = []
    for side in (-1, 1):
        up, lo = _eye_curves(ident, side, p)
        # iBUG: left eye 36 outer, 37-38 upper, 39 inner, 40-41 lower (inner -> outer);
        # right eye 42 inner, 43-44 upper, 45 outer, 46-47 lower (outer -> inner)
        o, u1, u2, i_, l2, l1 = up[0], up[5], up[11], up[16], lo[11], lo[5]
        out += [o, u1, u2, i_, l2, l1] if side < 0 else [i_, u2, u1, o, l1, l2]
    return np.array(out)


def _mouth(ident, p):
    g = p.get
    my = ident.mouth_y + 0.22 * (ident.face_l - 1.3)
    mw = ident.mouth_w * (1 + g("mouth_w", 0.0) - 0.45 * g("mouth_round", 0.0))
    press = min(1.0, max(0.0, g("lip_press", 0.0)))
    lu, ll = ident.lip_thick * (1 - .65 * press), ident.lip_thick * 1.25 * (1 - .65 * press)
    opening = max(0.0, g("mouth_open", 0.0))
    upl = g("upper_lip", 0.0)
    cl, cr = g("corner_l", 0.0), g("corner_r", 0.0)

    def lift(x):
        # corners pull the lip line up (smile) or down; effect fades towards the midline
        r = np.clip(x / mw, -1, 1)
        return np.where(r < 0, cl, cr) * r ** 2

    def open_profile(x):
        r = np.clip(np.abs(x / mw), 0, 1)
        power = 0.5 + 0.5 * (1 - min(1.0, g("mouth_round", 0.0) * 1.6))
        return opening * (1 - r ** 2) ** power

    xs_up = np.array([-mw, -.6 * mw, -.25 * mw, 0, .25 * mw, .6 * mw, mw])
    up_off = np.array([0, .8, 1.05, .9, 1.05, .8, 0]) * lu + np.array([0, .6, 1, 1, 1, .6, 0]) * upl
    outer_up = np.stack([xs_up, my - lift(xs_up) - up_off], 1)                   # 48..54
    xs_lo = np.array([.6 * mw, .3 * mw, 0, -.3 * mw, -.6 * mw])
    lo_y = my - lift(xs_lo) + open_profile(xs_lo) + np.array([.75, .95, 1, .95, .75]) * ll
    outer_lo = np.stack([xs_lo, lo_y], 1)                                          # 55..59
    ic = 0.92 * mw
    xs_in_up = np.array([-ic, -.4 * mw, 0, .4 * mw, ic])
    in_up = np.stack([xs_in_up, my - lift(xs_in_up) - np.array([0, .6, .6, .6, 0]) * upl], 1)   # 60..64
    xs_in_lo = np.array([.4 * mw, 0, -.4 * mw])
    in_lo = np.stack([xs_in_lo, my - lift(xs_in_lo) + open_profile(xs_in_lo)], 1)              # 65..67
    return np.concatenate([outer_up, outer_lo, in_up, in_lo])


@dataclass
class Pose:
    """Where the local face frame lands in the image: centre, half-face width in px, roll, yaw."""
    cx: float
    cy: float
    unit: float
    roll_deg: float = 0.0
    yaw: float = 0.0            # 0: frontal; > 0 profile facing image right, < 0 facing left


def to_image(pts: np.ndarray, pose: Pose) -> np.ndarray:
    """Map local points to image pixels: roll, scale, translate."""
    a = np.deg2rad(pose.roll_deg)
    c, s = pose.unit * np.cos(a), pose.unit * np.sin(a)
    return np.asarray(pts, float) @ np.array([[c, s], [-s, c]]) + (pose.cx, pose.cy)


def _three(m: np.ndarray) -> np.ndarray:
    # numpy broadcasting over a trailing axis of 1 is slow; a 3-channel copy is not
    return cv2.merge([m, m, m])


def poly_mask(polys, h, w, thickness=0, closed=True):
    """Anti-aliased coverage in [0, 1] of polygons (pixel coords) over their bounding box
    clipped to an h x w image: (mask, (row slice, column slice)) or (None, None) if outside."""
    allp = polys[0] if len(polys) == 1 else np.concatenate(polys)
    pad = thickness + 2
    (lx, ly), (hx, hy) = allp.min(0), allp.max(0)
    x0, y0 = max(0, int(lx) - pad - 1), max(0, int(ly) - pad - 1)
    x1, y1 = min(w, int(hx) + pad + 2), min(h, int(hy) + pad + 2)
    if x1 <= x0 or y1 <= y0:
        return None, None
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    off = np.array([x0, y0], float)
    ip = [((q - off) * 16 + 0.5).astype(np.int32) for q in polys]
    if thickness:
        cv2.polylines(m, ip, closed, 255, int(thickness), cv2.LINE_AA, shift=4)
    else:
        cv2.fillPoly(m, ip, 255, cv2.LINE_AA, shift=4)
    return m.astype(np.float32) * (1.0 / 255.0), (slice(y0, y1), slice(x0, x1))


@lru_cache(maxsize=8)
def _flat(h, w, b, g, r) -> np.ndarray:
    img = np.empty((h, w, 3), np.float32)
    img[:] = (b, g, r)
    img.setflags(write=False)
    return img


class Canvas:
    """A float BGR image with anti-aliased, alpha-composited polygon painting."""

    def __init__(self, h: int, w: int, fill):
        self.img = _flat(h, w, *map(float, fill)).copy()
        self.h, self.w = h, w

    def _mask(self, polys, thickness=0, closed=True):
        return poly_mask(polys, self.h, self.w, thickness, closed)

    def paint(self, polys, color, alpha=1.0, thickness=0, closed=True, blur=0.0):
        """Composite a filled polygon (or polyline of `thickness` px) in `color`."""
        m, roi = self._mask(polys, thickness, closed)
        if m is None:
            return
        if blur > 0.3:
            m = cv2.GaussianBlur(m, (0, 0), blur)
        m3 = _three(m * np.float32(alpha))
        reg = self.img[roi]
        reg += m3 * (np.asarray(color, np.float32) - reg)

    def shade_group(self, items, blur):
        """Multiply the image by (1 + sum of gain * blurred coverage) of (polygon, gain) items."""
        allp = np.concatenate([q for q, _ in items])
        pad = int(3 * blur) + 2
        x0 = int(max(0, np.floor(allp[:, 0].min()) - pad))
        y0 = int(max(0, np.floor(allp[:, 1].min()) - pad))
        x1 = int(min(self.w, np.ceil(allp[:, 0].max()) + pad + 1))
        y1 = int(min(self.h, np.ceil(allp[:, 1].max()) + pad + 1))
        if x1 <= x0 or y1 <= y0:
            return
        acc = np.zeros((y1 - y0, x1 - x0), np.float32)
        for q, gain in items:
            m, (ry, rx) = poly_mask([q - [x0, y0]], y1 - y0, x1 - x0)
            if m is not None:
                acc[ry, rx] += np.float32(gain) * m
        if blur > 0.3:
            acc = cv2.GaussianBlur(acc, (0, 0), blur)
        self.img[y0:y1, x0:x1] *= _three(1.0 + acc)

    def shade(self, polys, gain, blur):
        """Multiply the image by (1 + gain) inside a softly blurred polygon."""
        m, roi = self._mask(polys, 0)
        if m is None:
            return
        if blur > 0.3:
            # grow the region so the blur has room to fade out
            pad = int(3 * blur)
            y, x = roi
            y0, y1 = max(0, y.start - pad), min(self.h, y.stop + pad)
            x0, x1 = max(0, x.start - pad), min(self.w, x.stop + pad)
            big = np.zeros((y1 - y0, x1 - x0), np.float32)
            big[y.start - y0:y.stop - y0, x.start - x0:x.stop - x0] = m
            m, roi = cv2.GaussianBlur(big, (0, 0), blur), (slice(y0, y1), slice(x0, x1))
        self.img[roi] *= _three(1.0 + np.float32(gain) * m)


@lru_cache(maxsize=1024)
def _ellipse(cx, cy, rx, ry, n=40, a0=0.0, a1=2 * np.pi):
    # memoised: most ellipses are fixed per identity and reused on every frame
    t = np.linspace(a0, a1, n, endpoint=False if a1 - a0 >= 2 * np.pi - 1e-9 else True)
    e = np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)
    e.setflags(write=False)
    return e


def _face_outline(ident: Identity, p: dict, n=48) -> np.ndarray:
    """Closed outline of the face (local): the jaw curve below, a forehead dome above."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    s = np.clip(np.sin(t), 0, None)
    x = ident.face_w * np.cos(t) * (1.0 - (1.0 - ident.jaw) * s ** 2)
    y = ident.face_l * np.sin(t) + p.get("mouth_open", 0.0) * 0.55 * s ** 3   # the jaw drops
    y = np.where(np.sin(t) < 0, y * 1.03, y)          # forehead a little higher than the chin is low
    return np.stack([x, y], 1)


def _hair_shapes(ident: Identity):
    """Hair polygons (local): one behind the head, one over the forehead."""
    fw, fl = ident.face_w, ident.face_l
    top = fl + ident.hair_top
    back = _ellipse(0, -0.15, fw * 1.12, top + 0.05 - 0.15, 48)
    st = ident.hair_style
    if st == "long":
        back = np.concatenate([_ellipse(0, -0.15, fw * 1.15, top - 0.1, 32, np.pi, 2 * np.pi),
                               [[fw * 1.2, 1.6], [-fw * 1.2, 1.6]]])
    if st == "cropped":
        back = _ellipse(0, -0.25, fw * 1.04, top - 0.2, 48)
    # fringe: covers the top of the forehead down to `line`
    line = -fl * {"fringe": 0.55, "side": 0.62, "short": 0.72, "long": 0.7, "cropped": 0.82}[st]
    xs = np.linspace(-fw * 1.02, fw * 1.02, 15)
    if st == "side":
        ys = line - 0.18 * (xs / fw + 1) / 2
    else:
        ys = line - 0.08 * (1 - (xs / fw) ** 2) * (st != "fringe")
    dome = _ellipse(0, -0.15, fw * 1.08, top - 0.15, 24, np.pi, 2 * np.pi)
    fringe = np.concatenate([dome, np.stack([xs[::-1], ys[::-1]], 1)])
    return back, fringe


def render(ident: Identity, p: dict, pose: Pose, size: tuple[int, int], light: dict,
           rng: np.random.Generator | None = None, noise: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw one frame. Returns (BGR uint8 image of `size` = (h, w), 68 landmarks in pixels).

    light: `gradient` (side-light slope), `vertical` (ramp), `gain` (exposure), and, set once
    per sequence by common.sequence_setup, `cx`/`unit` (where the lighting centres, so it
    stays put while the head wobbles) and `noise_bank` (see noise_bank).
    """
    h, w = size
    u = pose.unit
    cv = Canvas(h, w, ident.background)

    pts = landmarks(ident, p)
    skin = ident.skin

    def img_pts(q):
        return to_image(q, pose)

    # neck and shoulders (clothes) below the face
    neck = np.array([[-0.55, 0.6], [0.55, 0.6], [0.6, 2.2], [-0.6, 2.2]])
    cv.paint([img_pts(neck)], skin * 0.78)
    shirt = np.array([[-2.2, 1.75], [2.2, 1.75], [2.6, 3.5], [-2.6, 3.5]])
    cv.paint([img_pts(shirt)], ident.background * 0.45 + 30)
    if pose.yaw:
        _profile(cv, ident, p, pose)
    else:
        _frontal(cv, ident, p, pts, img_pts, u)
    cx, cu = light.get("cx", pose.cx), light.get("unit", u)
    cv.img *= light_field(h, w, light.get("vertical", 0.0), light.get("gradient", 0.0),
                          light.get("gain", 1.0), round(cx, 1), round(cu, 1))
    img = cv2.GaussianBlur(cv.img, (0, 0), max(0.4, 0.012 * u))
    if rng is not None and noise > 0:
        img += _noise(rng, img.shape, light.get("noise_bank")) * np.float32(noise)
    out = cv2.convertScaleAbs(np.maximum(img, 0, out=img))     # rounds and saturates at 255
    return out, to_image(pts, pose)


def _frontal(cv: Canvas, ident, p, pts, img_pts, u):
    """A frontal face: hair, ears, face oval, shading, fringe, then the features."""
    if "hair" not in ident.cache:
        ident.cache["hair"] = _hair_shapes(ident)
    back, fringe = ident.cache["hair"]
    cv.paint([img_pts(back)], ident.hair)
    for side in (-1, 1):
        ear = _ellipse(side * ident.face_w * 1.02, ident.eye_y + 0.12, 0.11, 0.22, 16)
        cv.paint([img_pts(ear)], ident.skin * 0.85)
    cv.paint([img_pts(_face_outline(ident, p))], ident.skin)
    _shading(cv, ident, p, pts, img_pts, u)
    cv.paint([img_pts(fringe)], ident.hair)
    _features(cv, ident, p, pts, img_pts, u)


def _profile(cv: Canvas, ident, p, pose: Pose):
    """A head turned to the side (MMI profile and dual-view recordings): silhouette with
    brow ridge, nose, lips and chin, one eye, an ear and the hair at the back. Facing the
    image right for yaw > 0, left for yaw < 0."""
    g = p.get
    d = 1.0 if pose.yaw > 0 else -1.0
    u = pose.unit

    def px(q):
        q = np.asarray(q, float)
        return to_image(q * [d, 1.0], pose)

    skin = ident.skin
    ey = ident.eye_y
    my = ident.mouth_y + 0.22 * (ident.face_l - 1.3)
    tip_y = ey + ident.nose_len + 0.22
    drop = 0.55 * g("mouth_open", 0.0)
    nb = tip_y + 0.07 - 0.25 * g("upper_lip", 0.0)
    front = [(0.3, -1.4), (0.68, -1.15), (0.84, -0.75), (0.9, ey - 0.25), (0.83, ey - 0.02),
             (1.05 + 0.45 * ident.nose_len, tip_y), (0.9, nb), (0.95, my - 0.08),
             (0.9, my + 0.4 * drop), (0.93, my + 0.08 + drop), (0.84, my + 0.2 + drop),
             (0.88, my + 0.36 + drop), (0.72, ident.face_l - 0.02 + drop), (0.25, ident.face_l - 0.15 + drop),
             (-0.3, 0.7), (-0.6, 0.1), (-0.7, -0.7), (-0.3, -1.35)]
    cv.paint([px(front)], skin)
    hair = [(0.45, -1.42), (0.0, -1.62), (-0.65, -1.45), (-1.0, -0.9), (-1.05, -0.1),
            (-0.9, 0.55 if ident.hair_style != "long" else 1.5), (-0.45, 0.35), (-0.4, -0.45),
            (-0.05, -0.95), (0.55, -1.08 + 0.25 * (ident.hair_style == "fringe"))]
    cv.paint([px(hair)], ident.hair)
    cv.paint([px(_ellipse(-0.2, ey + 0.15, 0.12, 0.22, 16))], skin * 0.82)
    cv.paint([px(_ellipse(-0.2, ey + 0.15, 0.05, 0.12, 12))], skin * 0.55, blur=0.02 * u)
    cv.shade([px(_ellipse(0.35, ey + 0.55, 0.35, 0.3, 16))], -0.12, max(0.8, 0.12 * u))
    cv.shade([px(_ellipse(0.7, ey, 0.16, 0.12, 16))], -0.3, max(0.8, 0.06 * u))
    # eye (seen from the side: narrow), brow above it
    oh = ident.eye_h * max(0.15, 1.0 + g("eye_open", 0.0))
    eye = [(0.55, ey), (0.66, ey - oh), (0.74, ey - 0.3 * oh), (0.76, ey + 0.2 * oh), (0.64, ey + 0.6 * oh)]
    cv.paint([px(eye)], np.array([170, 175, 185]))
    cv.paint([px(_ellipse(0.7, ey + 0.005, 0.035, min(oh, ident.eye_h), 12))], ident.iris * 0.7)
    cv.paint([px(eye[:3])], ident.hair * 0.5 + 10, thickness=max(1, int(0.03 * u)), closed=False)
    by = ey - ident.brow_gap + g("brow_down", 0.0) - g("brow_in_up", 0.0) * 0.7 - g("brow_out_up", 0.0) * 0.3
    brow = [(0.45, by + 0.02), (0.82, by - 0.02), (0.84, by + ident.brow_thick), (0.45, by + ident.brow_thick + 0.02)]
    cv.paint([px(brow)], ident.hair * 0.6 + ident.skin * 0.2)
    # nostril, lips and the mouth line back to the corner
    cv.paint([px(_ellipse(0.93, nb - 0.04, 0.05, 0.02, 10))], skin * 0.4)
    corner = (0.66, my - 0.5 * (g("corner_l", 0.0) + g("corner_r", 0.0)))
    lips = [(0.95, my - 0.08), (0.93, my + 0.08 + drop), corner]
    cv.paint([px(lips)], skin * ident.lip_tint)
    if g("mouth_open", 0.0) > 0.015:
        cv.paint([px([(0.92, my - 0.01), (0.9, my + drop + 0.02), corner])], np.array([35, 30, 60]))
    cv.paint([px([(0.93, my + 0.4 * drop), corner])], skin * 0.35, thickness=1, closed=False)


@lru_cache(maxsize=16)
def light_field(h, w, vertical, gradient, gain, cx, unit) -> np.ndarray:
    """Multiplicative lighting of a frame (cached: constant within a sequence): a soft
    ramp over the whole frame plus a stronger side-light gradient across the face."""
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    ramp = 1.0 + 0.12 * vertical * yy + 0.15 * gradient * xx
    across = np.clip((np.arange(w, dtype=np.float32)[None, :] - cx) / (1.5 * unit), -1, 1)
    field = _three((ramp * (1.0 + 0.25 * gradient * across) * gain).astype(np.float32))
    field.setflags(write=False)
    return field


def noise_bank(rng: np.random.Generator, shape) -> np.ndarray:
    """Unit Gaussian noise a little larger than a frame; each frame reads it at a random
    offset (sensor noise that differs per frame at a fraction of the cost of fresh draws)."""
    h, w, c = shape
    return rng.standard_normal((h + 17, w + 17, c), dtype=np.float32)


def _noise(rng, shape, bank):
    if bank is None:
        return rng.standard_normal(shape, dtype=np.float32)
    dy, dx = rng.integers(0, 17, 2)
    return bank[dy:dy + shape[0], dx:dx + shape[1]]


def _shading(cv: Canvas, ident, p, pts, img_pts, u):
    """Soft light and shadow that make the face read as a face (and as one to a Haar cascade)."""
    g = p.get
    b = max(0.8, 0.09 * u)
    # dark eye sockets under the brow ridge, bright nose bridge and cheeks; two blur
    # levels, each applied once to all its shapes (blurring is linear, so this is cheap)
    fine, coarse = [], []
    for side in (-1, 1):
        ex, ey = side * ident.eye_dx, ident.eye_y
        fine.append((_ellipse(ex, ey - 0.05, ident.eye_w * 1.45, 0.16, 20), -0.38))
        coarse.append((_ellipse(side * 0.48, ey + 0.38 - 0.08 * g("cheek", 0.0), 0.24, 0.17, 16),
                       0.1 + 0.06 * g("cheek", 0.0)))
        coarse.append((_ellipse(side * ident.face_w * 0.95, 0.3, 0.22, 0.9, 20), -0.22))
    fine.append((np.array([[-0.08, ident.eye_y - 0.05], [0.08, ident.eye_y - 0.05],
                           [0.1, pts[30, 1]], [-0.1, pts[30, 1]]]), 0.14))
    coarse.append((_ellipse(0, ident.eye_y - 0.55, 0.5, 0.25, 16), 0.08))
    # shadow under the nose and under the lower lip
    fine.append((_ellipse(0, pts[33, 1] + 0.04, ident.nose_w * 1.1, 0.05, 16), -0.25))
    fine.append((_ellipse(0, pts[57, 1] + 0.07, 0.22, 0.05, 16), -0.18))
    cv.shade_group([(img_pts(q), gain) for q, gain in fine], b)
    cv.shade_group([(img_pts(q), gain) for q, gain in coarse], 1.8 * b)
    if g("cheek", 0.0) > 0.05:
        # nasolabial folds of a smile (AU6+12)
        for side, corner in ((-1, 48), (1, 54)):
            fold = np.array([pts[31 if side < 0 else 35] + [side * 0.06, 0.0],
                             pts[corner] + [side * 0.06, -0.02], pts[corner] + [side * 0.09, 0.05]])
            cv.paint([img_pts(fold)], ident.skin * 0.55, alpha=min(1.0, 0.6 * g("cheek")),
                     thickness=max(1, int(0.03 * u)), closed=False, blur=0.03 * u)


def _features(cv: Canvas, ident, p, pts, img_pts, u):
    g = p.get
    skin = ident.skin
    dark = ident.hair * 0.5 + np.array([15, 15, 15])
    # brows: a polygon thicker at the inner end
    for side, idx in ((-1, [17, 18, 19, 20, 21]), (1, [26, 25, 24, 23, 22])):
        c = pts[idx]
        th = ident.brow_thick * np.array([0.45, 0.8, 1.0, 1.1, 1.15])[:, None] * [0, 1]
        poly = np.concatenate([c - th * 0.6, (c + th * 0.6)[::-1]])
        cv.paint([img_pts(poly)], dark * 0.8 + ident.skin * 0.2)
    # forehead lines (surprise, fear: AU1+2) and glabella lines (anger, disgust: AU4)
    if g("forehead", 0.0) > 0.05:
        for k in range(3):
            y = ident.eye_y - ident.brow_gap - 0.2 - 0.09 * k
            ln = _smooth_arc(-0.35, 0.35, y, -0.03, 9)
            cv.paint([img_pts(ln)], skin * 0.6, alpha=min(1.0, 0.7 * g("forehead")),
                     thickness=1, closed=False, blur=0.02 * u)
    if g("glabella", 0.0) > 0.05:
        for side in (-1, 1):
            ln = np.array([[side * 0.06, ident.eye_y - ident.brow_gap - 0.1], [side * 0.045, ident.eye_y - 0.06]])
            cv.paint([img_pts(ln)], skin * 0.55, alpha=min(1.0, 0.8 * g("glabella")),
                     thickness=max(1, int(0.025 * u)), closed=False, blur=0.02 * u)
    # eyes: sclera, iris clipped by the lids, a dark upper lid line
    for side in (-1, 1):
        up, lo = _eye_curves(ident, side, p)
        eye = np.concatenate([up, lo[::-1][1:-1]])
        e_img = img_pts(eye)
        cv.paint([e_img], np.array([185, 190, 200]) * 0.85 * (0.6 + 0.4 * skin.mean() / 200))
        m, roi = cv._mask([e_img])
        if m is not None:
            mh, mw = m.shape
            cx = side * ident.eye_dx
            r = ident.eye_h * 1.05
            iris_local = _ellipse(cx, ident.eye_y + 0.01, r, r, 24)
            ip = img_pts(iris_local) - [roi[1].start, roi[0].start]
            im, iroi = poly_mask([ip], mh, mw)
            if im is not None:
                full = np.zeros_like(m)
                full[iroi] = im
                a = _three(m * full)
                reg = cv.img[roi]
                reg += a * (ident.iris.astype(np.float32) - reg)
                pr = _ellipse(cx, ident.eye_y + 0.01, r * 0.45, r * 0.45, 16)
                pm, proi = poly_mask([img_pts(pr) - [roi[1].start, roi[0].start]], mh, mw)
                if pm is not None:
                    full[:] = 0
                    full[proi] = pm
                    a = _three(m * full)
                    reg += a * (np.float32(15.0) - reg)
        cv.paint([img_pts(up)], dark * 0.6, thickness=max(1, int(round(0.035 * u))), closed=False)
        cv.paint([img_pts(lo)], skin * 0.65, alpha=0.6, thickness=1, closed=False)
    # nose: nostrils and soft wing shadows; disgust wrinkles across the bridge (AU9)
    for side, i in ((-1, 32), (1, 34)):
        n = _ellipse(pts[i, 0] + side * 0.01, pts[i, 1] - 0.005, 0.045, 0.022, 12)
        cv.paint([img_pts(n)], skin * 0.3, blur=0.01 * u)
        wing = np.array([pts[27 + 2] + [side * 0.06, 0], pts[31 if side < 0 else 35]])
        cv.paint([img_pts(wing)], skin * 0.6, alpha=0.5, thickness=1, closed=False, blur=0.02 * u)
    if g("nose_wrinkle", 0.0) > 0.05:
        for k in range(3):
            y = ident.eye_y + 0.05 + 0.06 * k
            ln = _smooth_arc(-0.12, 0.12, y, 0.02, 7)
            cv.paint([img_pts(ln)], skin * 0.55, alpha=min(1.0, 0.8 * g("nose_wrinkle")),
                     thickness=max(1, int(0.025 * u)), closed=False, blur=0.015 * u)
    # mouth: lips, then the opening (dark) with teeth, else a dark lip line
    lips = pts[48:60]
    cv.paint([img_pts(lips)], skin * ident.lip_tint)
    inner = np.concatenate([pts[60:65], pts[65:68]])
    opening = g("mouth_open", 0.0)
    if opening > 0.015:
        cv.paint([img_pts(inner)], np.array([35, 30, 60]))
        if g("teeth", 0.0) > 0.05:
            top = pts[60:65]
            teeth = np.concatenate([top, top[::-1] + [0, min(opening, 0.06) * 0.8]])
            cv.paint([img_pts(teeth)], np.array([210, 215, 220]) * 0.9, alpha=min(1.0, g("teeth")))
    cv.paint([img_pts(pts[60:65])], skin * 0.3, thickness=max(1, int(round(0.025 * u))), closed=False)
    if g("dimple_r", 0.0) > 0.05:
        d = np.array([pts[54] + [0.03, -0.05], pts[54] + [0.05, 0.04]])
        cv.paint([img_pts(d)], skin * 0.55, alpha=min(1.0, 0.8 * g("dimple_r")),
                 thickness=max(1, int(0.025 * u)), closed=False, blur=0.02 * u)
