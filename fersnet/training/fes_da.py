"""FES-DA: enlarge and balance the training set with FERSNet's own synthesized faces (paper.md 2).

The paper says FES is used "to enlarge and balance the training dataset" and gives no rule
(NOT FOUND); an earlier version of the authors' README fine-tunes "with 21K synthetic facial
images". Ours (`fes_da.per_class`, docs/training.md):
- `all_targets` (default): every real training face is rendered into each of the other
  expressions of its database, so the set grows to C x its size, then every class is topped up
  to the largest one (a no-op here: each class then holds one face per real training face);
- `balance`: only the top-up, every class to the largest class's count of training faces;
- an integer N: N synthetic faces per class.
- Sources of a top-up for class c are training faces of other expressions, drawn without
  replacement while enough exist (seeded by (seed, fold)); each is rendered into c from its
  centre crop.
- The rendered crop is pasted back into a copy of its source's stored image, so synthetic faces
  have the stored size and get the same random crops and flips as real ones.

The mix (`fes_da.real_share`): null keeps every real face once beside its renderings (1/C real
under all_targets); a share repeats the real faces so that they make about that share of the set.

The control `fes_da_real` gets the same fine-tuning on real faces only: the real training faces
repeated to the size of FES-DA's set (`repeat_real`), so both see the same number of samples
per epoch and take the same number of steps.
"""
from __future__ import annotations

import numpy as np
import torch

from fersnet.training.batches import center_offsets, derive_seed

SALT = 7  # stream id of FES-DA's random choices within derive_seed(seed, fold, SALT)
ALL_TARGETS, BALANCE = "all_targets", "balance"
PER_CLASS_WORDS = (ALL_TARGETS, BALANCE)


def synthetic_counts(labels: np.ndarray, n_classes: int, per_class: str) -> np.ndarray:
    """How many faces to synthesize per class on top of the real ones (`balance` or an integer)."""
    counts = np.bincount(labels, minlength=n_classes)
    if per_class == BALANCE:
        return counts.max() - counts
    return np.full(n_classes, int(per_class), dtype=np.int64)


def choose_sources(labels: np.ndarray, rows: np.ndarray, need: np.ndarray, rng: np.random.Generator):
    """(source rows, target labels): for each class, `need[c]` training rows of other classes."""
    src, tgt = [], []
    for c, k in enumerate(need):
        if k <= 0:
            continue
        pool = rows[labels[rows] != c]
        picked = rng.choice(pool, size=int(k), replace=bool(k > len(pool)))
        src.append(picked)
        tgt.append(np.full(int(k), c, dtype=np.int64))
    if not src:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(src), np.concatenate(tgt)


def all_other_targets(labels: np.ndarray, rows: np.ndarray, n_classes: int):
    """(source rows, target labels): every row once into each class other than its own."""
    rows = np.asarray(rows, dtype=np.int64)
    targets = np.arange(n_classes)
    src = np.repeat(rows, n_classes - 1)
    tgt = np.concatenate([targets[targets != labels[r]] for r in rows]) if len(rows) else np.zeros(0, np.int64)
    return src, tgt.astype(np.int64)


def plan(labels: np.ndarray, rows: np.ndarray, n_classes: int, per_class: str, rng: np.random.Generator):
    """(source rows, target labels) of every face to synthesize for `rows` under `fes_da.per_class`."""
    rows = np.asarray(rows, dtype=np.int64)
    if per_class != ALL_TARGETS:
        return choose_sources(labels, rows, synthetic_counts(labels[rows], n_classes, per_class), rng)
    src, tgt = all_other_targets(labels, rows, n_classes)
    # then balanced to the largest class (each class already holds one face per real face, unless
    # a class has no training face of its own; kept so that the rule holds for any fold)
    counts = np.bincount(labels[rows], minlength=n_classes) + np.bincount(tgt, minlength=n_classes)
    top_src, top_tgt = choose_sources(labels, rows, counts.max() - counts, rng)
    return np.concatenate([src, top_src]), np.concatenate([tgt, top_tgt])


def repeat_real(rows: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """`rows` repeated to `size` entries: every row the same number of times, the remainder drawn
    without replacement (the control's training set, as large as FES-DA's)."""
    rows = np.asarray(rows, dtype=np.int64)
    whole, rest = divmod(int(size), len(rows))
    extra = rng.choice(rows, size=rest, replace=False) if rest else np.zeros(0, np.int64)
    return np.concatenate([np.tile(rows, whole), extra])


def real_rows(rows: np.ndarray, n_synthetic: int, real_share: float | None) -> np.ndarray:
    """The real rows of FES-DA's set: each once (`fes_da.real_share: null`, the natural mix, 1/C real
    under all_targets), or repeated so that real faces make about `real_share` of the samples."""
    rows = np.asarray(rows, dtype=np.int64)
    if real_share is None or not len(rows):
        return rows
    copies = max(1, int(round(real_share / (1 - real_share) * n_synthetic / len(rows))))
    return np.tile(rows, copies)


def rng_for(cfg: dict, fold: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(cfg["seed"], fold, SALT))


@torch.no_grad()
def synthesize(task, images: np.ndarray, src: np.ndarray, tgt: np.ndarray, crop: int, device,
               batch_size: int = 64) -> np.ndarray:
    """uint8 (M,H,W,C): stored images of src with their centre crop replaced by the face rendered into tgt."""
    task.eval()
    out = images[src].copy()
    off = center_offsets(images.shape[1], crop)
    for b in range(0, len(src), batch_size):
        block = out[b:b + batch_size, off:off + crop, off:off + crop]
        x = torch.from_numpy(np.ascontiguousarray(block.transpose(0, 3, 1, 2))).to(device).float() / 255
        with task.autocast():
            fake = task.synthesize(x, torch.from_numpy(tgt[b:b + batch_size]).to(device))
        fake = (fake.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        out[b:b + batch_size, off:off + crop, off:off + crop] = fake
    return out


def augment(task, images, labels, train_rows, n_classes, cfg, fold, device):
    """Synthetic faces for the training rows: (images uint8, target labels, source rows)."""
    src, tgt = plan(labels, train_rows, n_classes, cfg["fes_da"]["per_class"], rng_for(cfg, fold))
    imgs = synthesize(task, images, src, tgt, cfg["train"]["crop"], device)
    return imgs, tgt, src


def control_rows(labels, train_rows, n_classes, cfg, fold) -> np.ndarray:
    """The control's training rows: the real faces repeated to the size FES-DA's set has."""
    rng = rng_for(cfg, fold)
    src, _ = plan(labels, train_rows, n_classes, cfg["fes_da"]["per_class"], rng)
    size = len(real_rows(train_rows, len(src), cfg["fes_da"]["real_share"])) + len(src)
    return repeat_real(train_rows, size, rng)
