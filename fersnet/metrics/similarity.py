"""Paired similarity: a synthesized face against the same subject's real face of the target.

Where the test subject has real images of the target expression, each synthesized face
is compared (SSIM, PSNR from scikit-image, data range 255) with every such real image
and the values are averaged per synthesized face; faces without a real counterpart are
not counted (`n_pairs` says how many were).
"""
from __future__ import annotations

import numpy as np

# PSNR of identical images is infinite; capping keeps means finite and JSON valid.
PSNR_CAP_DB = 100.0


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 (h, w, C) images (scikit-image, Wang et al. 2004 default window)."""
    from skimage.metrics import structural_similarity
    if a.shape != b.shape:
        raise ValueError(f"SSIM of images of different shapes {a.shape} and {b.shape}")
    if a.shape[-1] == 1:
        return float(structural_similarity(a[..., 0], b[..., 0], data_range=255))
    return float(structural_similarity(a, b, data_range=255, channel_axis=-1))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (scikit-image), capped at PSNR_CAP_DB."""
    from skimage.metrics import peak_signal_noise_ratio
    if np.array_equal(a, b):
        return PSNR_CAP_DB
    return float(min(peak_signal_noise_ratio(a, b, data_range=255), PSNR_CAP_DB))


def reference_rows(subjects: np.ndarray, labels: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    """(subject, label) -> positions of that subject's real images of that expression."""
    out: dict[tuple[str, int], list[int]] = {}
    for pos, key in enumerate(zip(map(str, subjects), map(int, labels))):
        out.setdefault(key, []).append(pos)
    return {k: np.asarray(v) for k, v in out.items()}


def real_target_positions(subjects, labels, sources, targets) -> np.ndarray:
    """For each (source, target) pair: the position of the source subject's first real face of the
    target expression (the *real target* reference row: what a perfect synthesis would give), -1
    where the subject has none."""
    refs = reference_rows(np.asarray(subjects), np.asarray(labels))
    subjects = np.asarray(subjects).astype(str)
    return np.array([int(refs[(subjects[s], int(t))][0]) if (subjects[s], int(t)) in refs else -1
                     for s, t in zip(sources, targets)], dtype=np.int64)


def paired_similarity(synth: np.ndarray, synth_subjects, synth_targets,
                      real: np.ndarray, real_subjects, real_labels) -> dict:
    """Mean SSIM/PSNR of synthesized faces against their subject's real faces of the target.

    Returns `ssim`, `psnr` (null when no pair exists), `n_pairs` and per-face values
    (`per_face_ssim`, `per_face_psnr`, NaN where unpaired) for pooling across folds.
    """
    refs = reference_rows(np.asarray(real_subjects), np.asarray(real_labels))
    face_ssim = np.full(len(synth), np.nan)
    face_psnr = np.full(len(synth), np.nan)
    for i, key in enumerate(zip(map(str, synth_subjects), map(int, synth_targets))):
        rows = refs.get(key)
        if rows is None:
            continue
        face_ssim[i] = np.mean([ssim(synth[i], real[r]) for r in rows])
        face_psnr[i] = np.mean([psnr(synth[i], real[r]) for r in rows])
    paired = ~np.isnan(face_ssim)
    n = int(paired.sum())
    return {"ssim": float(face_ssim[paired].mean()) if n else None,
            "psnr": float(face_psnr[paired].mean()) if n else None,
            "n_pairs": n, "per_face_ssim": face_ssim, "per_face_psnr": face_psnr}
