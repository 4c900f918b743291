"""Small helpers shared by the scoring modules: crops, tensors, strict JSON, staged result folders."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fersnet import ownership


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


def write_json(path: Path, obj) -> None:
    """Write a scoring file (fersnet.ownership.write_json) as strict JSON: a NaN or an infinity
    is an error (ValueError), never a `NaN` that other JSON readers refuse."""
    ownership.write_json(path, obj, allow_nan=False)


@contextmanager
def staged_outputs(final: Path, done_name: str, made_by: str):
    """Yield a marked staging folder to write `final` into; on success it is swapped in whole
    (fersnet.ownership.build_aside), so `final` holds either the old result or the new complete
    one (with `done_name`, metrics.json or scores.json), never a mix; a job that wrote no
    `done_name` is an error and leaves `final` as it was. A `final` that holds files fersnet did
    not create, or the output of another step than `made_by` (fersnet.ownership.step), is refused
    before any work. A full disk while writing is one line naming `final` (errors.DiskFull).
    """
    with ownership.build_aside(final, made_by) as tmp:
        yield tmp
        if not (tmp / done_name).is_file():
            raise FileNotFoundError(f"{tmp / done_name}: the job wrote no {done_name}")
