"""Small helpers shared by the scoring modules: crops, tensors, devices, atomic folders."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def centre_crop(images: np.ndarray, crop: int) -> np.ndarray:
    """Centre `crop` x `crop` window of uint8 (N, H, W, C) images (evaluation crop, architecture.md)."""
    h, w = images.shape[1:3]
    if crop > min(h, w):
        raise ValueError(f"crop {crop} larger than the images ({h}x{w})")
    top, left = (h - crop) // 2, (w - crop) // 2
    return images[:, top:top + crop, left:left + crop]


def to_tensor(images: np.ndarray, device="cpu"):
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [0, 1] (the networks' input convention)."""
    import torch
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x) -> np.ndarray:
    """float (N, C, H, W) in [0, 1] -> uint8 (N, H, W, C), rounded."""
    arr = x.detach().clamp(0, 1).mul(255.0).round().to("cpu").numpy().astype(np.uint8)
    return arr.transpose(0, 2, 3, 1)


def resolve_device(cfg: dict, override: str | None = None) -> str:
    """`train.device` (or a CLI override) -> a torch device string; auto picks cuda, mps, cpu."""
    import torch
    want = override or cfg["train"]["device"]
    if want != "auto":
        return want
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def write_json(path: Path, obj) -> None:
    """Write JSON through a temporary sibling and rename (never a half-written file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


@contextmanager
def staged_outputs(final: Path, done_name: str):
    """Yield a temporary sibling folder to write into; on success move its files into `final`.

    The file `done_name` (metrics.json, scores.json) moves last, so its presence means the
    job is complete; on error the temporary folder is removed and `final` is left as it was.
    Files only (not a folder rename) because the workflow may keep its logs in `final`.
    """
    final = Path(final)
    final.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        names = sorted(p.name for p in tmp.iterdir())
        # an older result's done file goes first: a crash while moving leaves an incomplete
        # folder (recomputed next time), never old scores beside new files
        (final / done_name).unlink(missing_ok=True)
        for name in [n for n in names if n != done_name] + [n for n in names if n == done_name]:
            os.replace(tmp / name, final / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
