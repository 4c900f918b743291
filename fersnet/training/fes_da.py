"""FES-DA: enlarge and balance the training set with FERSNet's own synthesized faces (paper.md 2).

The paper says FES is used "to enlarge and balance the training dataset" and gives no rule
(NOT FOUND); an earlier version of the authors' README fine-tunes "with 21K synthetic facial
images". Ours (docs/training.md, "FES-DA"): the final set (real faces, repeated by the mix, and
synthetic ones) holds the same number of samples T of every class, whatever the real class counts
and `fes_da.real_share`:
- the budget (`fes_da.per_class`): `all_targets` (default) as many faces as rendering every real
  training face into each of the other expressions of its database gives, (C - 1) x N;
  `balance` what tops every class up to the largest; an integer M, C x M;
- the mix (`fes_da.real_share`): null keeps every real face once; a share repeats the real faces
  (k copies) so that they make about that share of the real copies plus the budget;
- T = the set's size (k N + budget) shared equally among the C classes, raised where needed so
  that no class holds more real samples than T (the share then rises above the one asked for);
  class c gets T - k n_c synthetic faces.
- Sources of class c are the training faces of the other expressions, each used equally often,
  the remainder drawn without replacement (seeded by (seed, fold)); each is rendered into c from
  its centre crop. On a balanced fold under all_targets this renders every face into every other
  expression exactly once, at real_share null and 0.5 alike.
- The rendered crop is pasted back into a copy of its source's stored image, so synthetic faces
  have the stored size and get the same random crops and flips as real ones.

The control `fes_da_real` gets the same fine-tuning on real faces only: the real training faces
repeated to the size of FES-DA's set (`repeat_real`), so both see the same number of samples
per epoch and take the same number of steps.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from fersnet.seeds import stream
from fersnet.training.batches import center_offsets

ALL_TARGETS, BALANCE = "all_targets", "balance"
PER_CLASS_WORDS = (ALL_TARGETS, BALANCE)


class Plan(NamedTuple):
    """FES-DA's training set for one fold: real rows (with repeats), and per synthetic face its
    source row and target label."""
    real: np.ndarray
    src: np.ndarray
    tgt: np.ndarray


def synthetic_budget(counts: np.ndarray, per_class: str | int) -> int:
    """Synthetic faces `fes_da.per_class` asks for in all, given the real class counts: (C - 1) N
    (all_targets), the top-up of every class to the largest (balance) or C M (an integer M)."""
    counts = np.asarray(counts, dtype=np.int64)
    if per_class == ALL_TARGETS:
        return int((len(counts) - 1) * counts.sum())
    if per_class == BALANCE:
        return int((counts.max() - counts).sum())
    return int(len(counts) * int(per_class))


def real_copies(n_real: int, budget: int, real_share: float | None) -> int:
    """How often each real face appears: once (`fes_da.real_share: null`), or as often as makes
    the real faces about `real_share` of the real copies plus the synthetic budget."""
    if real_share is None or not n_real:
        return 1
    return max(1, int(round(real_share / (1 - real_share) * budget / n_real)))


def class_target(counts: np.ndarray, copies: int, budget: int) -> int:
    """T, every class's count in the final set: the set's size shared equally, at least the
    largest class's real samples."""
    counts = np.asarray(counts, dtype=np.int64)
    return int(max(-(-(copies * int(counts.sum()) + budget) // len(counts)), copies * int(counts.max())))


def sources(labels: np.ndarray, rows: np.ndarray, need: np.ndarray, rng: np.random.Generator):
    """(source rows, target labels): for each class c, `need[c]` training rows of other classes,
    every one equally often, the remainder drawn without replacement."""
    src, tgt = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for c, k in enumerate(need):
        pool = rows[labels[rows] != c]
        if k <= 0 or not len(pool):
            continue
        src.append(repeat_real(pool, int(k), rng))
        tgt.append(np.full(int(k), c, dtype=np.int64))
    return np.concatenate(src), np.concatenate(tgt)


def plan(labels: np.ndarray, rows: np.ndarray, n_classes: int, per_class: str | int,
         real_share: float | None, rng: np.random.Generator) -> Plan:
    """FES-DA's set for the training `rows` under `fes_da.per_class` and `fes_da.real_share`:
    every class holds T samples, real repeats and renderings together."""
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return Plan(rows, np.zeros(0, np.int64), np.zeros(0, np.int64))
    counts = np.bincount(labels[rows], minlength=n_classes)
    budget = synthetic_budget(counts, per_class)
    copies = real_copies(len(rows), budget, real_share)
    target = class_target(counts, copies, budget)
    src, tgt = sources(labels, rows, target - copies * counts, rng)
    return Plan(np.tile(rows, copies), src, tgt)


def repeat_real(rows: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """`rows` repeated to `size` entries: every row the same number of times, the remainder drawn
    without replacement (the control's training set, as large as FES-DA's)."""
    rows = np.asarray(rows, dtype=np.int64)
    whole, rest = divmod(int(size), len(rows))
    extra = rng.choice(rows, size=rest, replace=False) if rest else np.zeros(0, np.int64)
    return np.concatenate([np.tile(rows, whole), extra])


def rng_for(cfg: dict, fold: int) -> np.random.Generator:
    return np.random.default_rng(stream("fes_da", cfg["seed"], fold))


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
    """Synthetic faces for the training rows: (images uint8, target labels, source rows, real rows
    of the set with their repeats)."""
    p = plan(labels, train_rows, n_classes, cfg["fes_da"]["per_class"], cfg["fes_da"]["real_share"],
             rng_for(cfg, fold))
    imgs = synthesize(task, images, p.src, p.tgt, cfg["train"]["crop"], device)
    return imgs, p.tgt, p.src, p.real


def control_rows(labels, train_rows, n_classes, cfg, fold) -> np.ndarray:
    """The control's training rows: the real faces repeated to the size FES-DA's set has."""
    rng = rng_for(cfg, fold)
    p = plan(labels, train_rows, n_classes, cfg["fes_da"]["per_class"], cfg["fes_da"]["real_share"], rng)
    return repeat_real(train_rows, len(p.real) + len(p.src), rng)
