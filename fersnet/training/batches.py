"""Device-resident training data: one uint8 tensor, crops, flips and source->target pairing by index.

An epoch is decided first, as an `EpochPlan` of plain index tensors drawn from a generator
seeded by (seed, fold, epoch): which source rows in which order, each one's target row and
label, crop offsets and flips. Materialising the plan is separate:

- `DeviceBatcher` gathers whole batches from the tensor on the training device (the fast path);
- `PlanDataset` gives the same items one at a time for a per-item `DataLoader` (the
  straightforward path); its collated batches equal the device batches (tests/test_training.py).

Pairing (R2021 data.py, paper.md 2): each source gets a real face of the same subject with a
different expression. A subject with no such face gets a random other label and no paired target
(`has_t` False, so no L1 term), where R2021 would crash.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class DeviceData:
    """All images of a database (plus any synthetic ones) as one tensor on the training device."""

    images: torch.Tensor        # uint8 (N, H, W, C) on device
    labels: torch.Tensor        # long (N,) on device
    labels_cpu: np.ndarray      # int (N,)
    subjects: np.ndarray        # int subject codes (N,)

    @classmethod
    def from_arrays(cls, images: np.ndarray, labels, subjects, device) -> "DeviceData":
        labels = np.array(labels, dtype=np.int64)              # writable copies for torch
        images = np.array(images, dtype=np.uint8, order="C")
        _, codes = np.unique(np.asarray(subjects).astype(str), return_inverse=True)
        return cls(images=torch.from_numpy(images).to(device),
                   labels=torch.from_numpy(labels).to(device), labels_cpu=labels, subjects=codes)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])


@dataclass
class PairIndex:
    """Candidate targets of each training row, as CSR: rows[i] pairs with flat[offsets[i]:offsets[i+1]]."""

    rows: torch.Tensor          # long (n,) training rows
    offsets: torch.Tensor       # long (n + 1,)
    flat: torch.Tensor          # long: candidate rows

    @classmethod
    def build(cls, data: DeviceData, rows) -> "PairIndex":
        """For every training row: the rows of the same subject with another label (computed once)."""
        rows = np.asarray(rows, dtype=np.int64)
        subj, lab = data.subjects[rows], data.labels_cpu[rows]
        by_subject: dict[int, np.ndarray] = {}
        for s in np.unique(subj):
            by_subject[int(s)] = rows[subj == s]
        lists = []
        for r, s, y in zip(rows, subj, lab):
            same = by_subject[int(s)]
            lists.append(same[data.labels_cpu[same] != y])
        counts = np.array([len(c) for c in lists], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        flat = np.concatenate(lists) if counts.sum() else np.zeros(0, np.int64)
        return cls(torch.from_numpy(rows), torch.from_numpy(offsets), torch.from_numpy(flat.astype(np.int64)))

    @property
    def counts(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]


@dataclass
class EpochPlan:
    """Every random choice of one epoch (CPU tensors, length n = training rows)."""

    src: torch.Tensor
    tgt: torch.Tensor
    s: torch.Tensor
    t: torch.Tensor
    has_t: torch.Tensor
    oy: torch.Tensor
    ox: torch.Tensor
    flip: torch.Tensor

    def __len__(self) -> int:
        return len(self.src)


def make_plan(pairs: PairIndex, labels_cpu: np.ndarray, n_classes: int, size: int, crop: int,
              generator: torch.Generator, flip: bool = True) -> EpochPlan:
    """Draw one epoch: shuffle, pick a target per source, crop offsets and flips (same for source and target)."""
    n = len(pairs.rows)
    perm = torch.randperm(n, generator=generator)
    src = pairs.rows[perm]
    counts = pairs.counts[perm]
    pick = (torch.rand(n, generator=generator, dtype=torch.float64) * counts).long()
    has_t = counts > 0
    if len(pairs.flat):
        pos = (pairs.offsets[perm] + pick).clamp(max=len(pairs.flat) - 1)
        tgt = torch.where(has_t, pairs.flat[pos], src)
    else:
        tgt = src.clone()
    s = torch.from_numpy(labels_cpu)[src]
    # unpaired sources: a uniformly drawn label other than their own
    other = torch.randint(0, max(n_classes - 1, 1), (n,), generator=generator)
    other = other + (other >= s).long()
    t = torch.where(has_t, torch.from_numpy(labels_cpu)[tgt], other)
    oy = torch.randint(0, size - crop + 1, (n,), generator=generator)
    ox = torch.randint(0, size - crop + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    return EpochPlan(src, tgt, s, t, has_t, oy, ox, flips)


def crop_flip(images: torch.Tensor, rows, oy, ox, flip, crop: int) -> torch.Tensor:
    """Gather crops (with horizontal flips) of rows from uint8 (N,H,W,C) -> float (B,C,crop,crop) in [0,1].

    One advanced-indexing gather; the result is NHWC in memory, i.e. channels_last.
    """
    ar = torch.arange(crop, device=images.device)
    ys = oy[:, None] + ar
    xs = torch.where(flip[:, None], ox[:, None] + crop - 1 - ar, ox[:, None] + ar)
    out = images[rows[:, None, None], ys[:, :, None], xs[:, None, :]]
    return out.permute(0, 3, 1, 2).float().div_(255)


def center_offsets(size: int, crop: int) -> int:
    """Evaluation uses the centre crop (docs/architecture.md; R2021 offset 7 of 14)."""
    return (size - crop) // 2


def n_batches(n: int, batch_size: int, keep_partial: bool = False) -> int:
    """Batches (optimizer steps) of an epoch over n items. The models drop an incomplete last
    batch (BatchNorm), unless that would leave none; with `keep_partial` (the judge,
    `index_batches`) an incomplete last batch is kept unless it holds a single item (BatchNorm
    needs two)."""
    if keep_partial:
        return sum(1 for i in range(0, n, int(batch_size)) if n - i >= 2)
    return max(1, n // batch_size)


def epochs_for_steps(epochs: int, min_steps: int | None, steps_per_epoch: int) -> int:
    """`epochs`, raised to reach at least `min_steps` optimizer steps when that is set (`train.min_steps`,
    `judge.min_steps`): databases differ in size, so a step budget gives each the same number of updates."""
    epochs = int(epochs)
    if min_steps and steps_per_epoch:
        epochs = max(epochs, -(-int(min_steps) // steps_per_epoch))
    return epochs


def index_batches(n: int, batch_size: int, generator: torch.Generator):
    """Shuffled index batches of n items with `n_batches(..., keep_partial=True)`'s rule: an
    incomplete last batch is kept unless it holds a single item. The permutation is drawn when
    the first batch is taken."""
    order = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        if len(idx) >= 2:
            yield idx


class DeviceBatcher:
    """Materialise a plan batch by batch from the device tensor."""

    def __init__(self, data: DeviceData, crop: int, batch_size: int):
        self.data, self.crop, self.batch_size = data, crop, batch_size
        self.device = data.images.device

    def batches(self, plan: EpochPlan):
        dev = self.device
        idx = {k: getattr(plan, k).to(dev) for k in ("src", "tgt", "s", "t", "has_t", "oy", "ox", "flip")}
        for b in range(n_batches(len(plan), self.batch_size)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            oy, ox, fl = idx["oy"][sl], idx["ox"][sl], idx["flip"][sl]
            yield {"x": crop_flip(self.data.images, idx["src"][sl], oy, ox, fl, self.crop),
                   "xt": crop_flip(self.data.images, idx["tgt"][sl], oy, ox, fl, self.crop),
                   "s": idx["s"][sl], "t": idx["t"][sl], "has_t": idx["has_t"][sl]}

    def center(self, rows, batch_size: int = 128):
        """Centre crops of rows, in batches (evaluation)."""
        rows = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        off = center_offsets(self.data.size, self.crop)
        for b in range(0, len(rows), batch_size):
            r = rows[b:b + batch_size].to(self.device)
            o = torch.full_like(r, off)
            yield crop_flip(self.data.images, r, o, o, torch.zeros_like(r, dtype=torch.bool), self.crop)


class PlanDataset(torch.utils.data.Dataset):
    """The straightforward path: item i of a plan, cropped and flipped with numpy from the uint8 array."""

    def __init__(self, images: np.ndarray, plan: EpochPlan, crop: int):
        self.images, self.plan, self.crop = images, plan, crop

    def __len__(self):
        return len(self.plan)

    def _image(self, row: int) -> np.ndarray:
        """uint8 (H, W, C) face of `row` (bench/train_step.py decodes it from a PNG instead)."""
        return self.images[row]

    def _crop(self, row, oy, ox, flip):
        img = self._image(row)[oy:oy + self.crop, ox:ox + self.crop]
        if flip:
            img = img[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float() / 255

    def __getitem__(self, i):
        p = self.plan
        oy, ox, fl = int(p.oy[i]), int(p.ox[i]), bool(p.flip[i])
        return {"x": self._crop(int(p.src[i]), oy, ox, fl), "xt": self._crop(int(p.tgt[i]), oy, ox, fl),
                "s": p.s[i], "t": p.t[i], "has_t": p.has_t[i]}
