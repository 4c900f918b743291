"""Small helpers shared by the scoring modules: crops, tensors, atomic folders."""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fersnet import ownership
from fersnet.errors import writing


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
    """Write JSON through a temporary sibling and rename (never a half-written file)."""
    path = Path(path)
    tmp = ownership.temp_path(path)
    with writing(path.parent):        # a full disk: one line naming the folder (errors.DiskFull)
        try:
            with open(tmp, "x") as f:
                json.dump(obj, f, indent=2, sort_keys=False, allow_nan=False)
                f.write("\n")
            ownership.pause_point(f"write:{path.name}")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


@contextmanager
def staged_outputs(final: Path, done_name: str, made_by: str):
    """Yield a marked temporary sibling folder to write into; on success swap it in for `final`.

    The whole folder is installed in one step (fersnet.ownership.swap_in), so `final` holds
    either the old result or the new complete one (with `done_name`, metrics.json or
    scores.json), never a mix; on error the temporary folder is removed and `final` is left as
    it was. A `final` that holds files fersnet did not create, or the output of another step
    than `made_by` (fersnet.ownership.step), is refused before any work. A full disk while writing
    is one line naming `final` (errors.DiskFull).
    """
    final = Path(final)
    ownership.check_replaceable(final, made_by)
    with writing(final):
        tmp = ownership.make_temp_dir(final.parent, final.name, made_by)
        try:
            yield tmp
            if not (tmp / done_name).is_file():
                raise FileNotFoundError(f"{tmp / done_name}: the job wrote no {done_name}")
            ownership.swap_in(tmp, final, made_by)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
