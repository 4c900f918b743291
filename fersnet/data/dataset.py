"""Load a preprocessed database (`data/processed/<db>/`): the contract between stages.

images.npy  uint8 (N, H, W, C), C = 1 (grayscale) or 3, H = W = preprocess.size
meta.csv    one row per image, same order: subject, sequence, frame, label (class index),
            expression (class name), fold, source (raw file; MMI: video#frame), face (how
            the face was found: landmarks, detector or center)
summary.json  db, classes (index = label), counts ({fold: {class: n}}: pandas.DataFrame(counts)
            is the class x fold table), skipped files, no-face list, settings used (protocol)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fersnet import paths
from fersnet.errors import DataError

META_COLUMNS = ["subject", "sequence", "frame", "label", "expression", "fold", "source", "face"]


@dataclass
class Processed:
    db: str
    images: np.ndarray          # uint8 (N, H, W, C)
    meta: "object"              # pandas.DataFrame, META_COLUMNS
    classes: list[str]
    summary: dict

    @property
    def channels(self) -> int:
        return int(self.images.shape[-1])

    def split(self, fold: int):
        """(train, test) row indices of a fold, subject-disjoint (checked)."""
        from fersnet.data.folds import split
        return split(self.meta, fold, int(self.meta["fold"].max()) + 1)


def load_processed(cfg: dict | None = None, db: str | None = None, folder: str | Path | None = None) -> Processed:
    """Read data/processed/<db>/ (or `folder`); errors name the file and what is wrong."""
    import pandas as pd

    folder = Path(folder) if folder is not None else paths.processed_dir(cfg, db)
    for name in (paths.IMAGES, paths.META, paths.PREP_SUMMARY):
        if not (folder / name).is_file():
            raise DataError(f"{folder / name}: missing; run `fersnet preprocess --db {db or '<db>'}` first")
    try:
        images = np.load(folder / paths.IMAGES, allow_pickle=False)
    except Exception as e:  # corrupt .npy
        raise DataError(f"{folder / paths.IMAGES}: cannot read ({e})") from None
    meta = pd.read_csv(folder / paths.META, dtype={"subject": str, "sequence": str})
    summary = json.loads((folder / paths.PREP_SUMMARY).read_text())
    missing = [c for c in META_COLUMNS if c not in meta.columns]
    if missing:
        raise DataError(f"{folder / paths.META}: missing column(s) {missing}")
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) != len(meta):
        raise DataError(f"{folder / paths.IMAGES}: expected uint8 (N,H,W,C) with N={len(meta)} rows of "
                        f"meta.csv, got {images.dtype} {images.shape}")
    return Processed(db=summary.get("db", db), images=images, meta=meta,
                     classes=list(summary["classes"]), summary=summary)
