"""FES-DA: enlarge and balance the training set with FERSNet's own synthesized faces (paper.md 2).

The paper gives no rule (NOT FOUND); ours (docs/training.md):
- `fes_da.per_class: balance` tops every class up to the largest class's count of training
  images; an integer N adds N synthetic faces to every class.
- Sources for class c are training images of other expressions, drawn without replacement
  while enough exist (seeded by (seed, fold)); each is rendered into c from its centre crop.
- The rendered crop is pasted back into a copy of its source's stored image, so synthetic faces
  have the stored size and get the same random crops and flips as real ones.
"""
from __future__ import annotations

import numpy as np
import torch

from fersnet.training.batches import center_offsets, derive_seed

SALT = 7  # stream id of FES-DA's random choices within derive_seed(seed, fold, SALT)


def synthetic_counts(labels: np.ndarray, n_classes: int, per_class: str) -> np.ndarray:
    """How many faces to synthesize per class."""
    counts = np.bincount(labels, minlength=n_classes)
    if per_class == "balance":
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
    """Synthetic faces for the training rows: (images uint8, labels, source rows, counts per class)."""
    need = synthetic_counts(labels[train_rows], n_classes, cfg["fes_da"]["per_class"])
    rng = np.random.default_rng(derive_seed(cfg["seed"], fold, SALT))
    src, tgt = choose_sources(labels, np.asarray(train_rows), need, rng)
    imgs = synthesize(task, images, src, tgt, cfg["train"]["crop"], device)
    return imgs, tgt, src, need
