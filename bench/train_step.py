"""Images per second of one full training step (all D and G updates) per model: fast path vs straightforward.

Fast path: the database as one uint8 tensor on the device, crops/flips/pairing by index
(fersnet/training/batches.py), bf16 autocast + channels-last on CUDA as the task configures.
Straightforward path (the authors' approach): faces written as PNG files to a temp folder,
decoded per item with cv2 in a Dataset and collated by a DataLoader every step, eager fp32.
Both run in the same process on the same batches, so the speed-up is a ratio on one machine.

    .venv/bin/python bench/train_step.py --profile test --models fersnet stargan --out bench/results/x.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fersnet import catalog, config  # noqa: E402
from fersnet.models import registry  # noqa: E402
from fersnet.training import batches as B  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import save  # noqa: E402

# every model of the catalogue but controls (a control trains as the model it controls)
MODELS = tuple(m for m in catalog.model_keys() if not catalog.model(m).control_of)


def synthetic_arrays(n_subjects: int, per_subject: int, size: int, channels: int, n_classes: int, seed: int):
    """Random faces, labels and subjects (speed does not depend on content)."""
    rng = np.random.default_rng(seed)
    n = n_subjects * per_subject
    images = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    labels = np.tile(np.arange(per_subject) % n_classes, n_subjects)
    subjects = np.repeat([f"S{i:03d}" for i in range(n_subjects)], per_subject)
    return images, labels, subjects


class PngPlanDataset(B.PlanDataset):
    """The straightforward path: item i of a plan, decoded from its PNG file on every access."""

    def __init__(self, folder: Path, plan: B.EpochPlan, crop: int, channels: int):
        super().__init__(None, plan, crop)
        self.folder, self.channels = folder, channels

    def _image(self, row: int) -> np.ndarray:
        flag = cv2.IMREAD_GRAYSCALE if self.channels == 1 else cv2.IMREAD_COLOR
        img = cv2.imread(str(self.folder / f"{row:06d}.png"), flag)
        if img.ndim == 2:
            return img[:, :, None]
        return img[:, :, ::-1] if self.channels == 3 else img     # cv2 decodes BGR; the tensor is RGB


def write_pngs(images: np.ndarray, folder: Path) -> None:
    """One lossless PNG per face, as the authors' loader reads them."""
    for i, img in enumerate(images):
        if img.shape[2] == 3:
            img = img[:, :, ::-1]
        cv2.imwrite(str(folder / f"{i:06d}.png"), img)


def png_batches(folder: Path, plan: B.EpochPlan, crop: int, channels: int, batch_size: int, device, workers=0):
    """Batches of the straightforward path, moved to the device each step."""
    loader = torch.utils.data.DataLoader(PngPlanDataset(folder, plan, crop, channels), batch_size=batch_size,
                                         drop_last=True, num_workers=workers)
    for batch in loader:
        yield {k: v.to(device) for k, v in batch.items()}


def build_task(cfg: dict, model: str, n_classes: int, channels: int, device, seed: int, fast: bool):
    """A freshly seeded task; fast on CUDA = channels-last + bf16 autocast as train.py sets them, else eager fp32."""
    torch.manual_seed(seed)
    task = registry.build(model, cfg, n_classes, channels).to(device)
    task.set_fast_ops(config.wanted(cfg["train"]["fast_ops"], torch.device(device)))   # as train.py
    if fast and torch.device(device).type == "cuda":
        task.to(memory_format=torch.channels_last)
        task.autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    task.train()
    return task


def task_and_batches(cfg: dict, model: str, batch_size: int, n_batches: int, seed: int):
    """A freshly seeded CPU task at `batch_size` and an endless stream of device batches, from enough
    synthetic faces (4 subjects) for `n_batches` batches of pairs."""
    size, crop = cfg["preprocess"]["size"], cfg["train"]["crop"]
    images, labels, subjects = synthetic_arrays(4, max(6, batch_size * n_batches // 4 + 1), size, 1, 6, seed)
    data = B.DeviceData.from_arrays(images, labels, subjects, "cpu")
    pairs = B.PairIndex.build(data, np.arange(len(images)))
    gen = torch.Generator().manual_seed(seed)
    batcher = B.DeviceBatcher(data, crop, batch_size)
    task = build_task({**cfg, "train": {**cfg["train"], "batch_size": batch_size}}, model, 6, 1, "cpu", seed, fast=True)
    return task, endless(lambda: batcher.batches(B.make_plan(pairs, data.labels_cpu, 6, size, crop, gen)))


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_steps(task, batches, warmup: int, repeats: int, device) -> list[float]:
    """Seconds per step (data fetch included) after warm-up; CUDA events on GPU, perf_counter on CPU."""
    times = []
    cuda = torch.device(device).type == "cuda"
    for i in range(warmup + repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        t0 = time.perf_counter()
        batch = next(batches)
        batch["step"] = i                              # StarGAN: G every n_critic steps
        task.train_step(batch)
        if cuda:
            end.record()
            torch.cuda.synchronize()
            dt = start.elapsed_time(end) / 1000
        else:
            dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
    return times


def flops_per_image(task, batch) -> float | None:
    """FLOPs of one full training step divided by the batch size (FlopCounterMode, fwd + bwd)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as counter:
            task.train_step(batch)
        return counter.get_total_flops() / len(batch["x"])
    except Exception:                                    # counting is informative only
        return None


def endless(make):
    while True:
        yield from make()


def time_compiled(cfg, model, n_classes, channels, device, seed, batches, warmup, repeats) -> dict:
    """The fast path with `train.compile: yes` (fersnet.training.train.compile_task): first step
    (includes compilation) and the median step after warm-up."""
    from fersnet.training.train import compile_task
    task = build_task(cfg, model, n_classes, channels, device, seed, fast=True)
    if not compile_task(task, cfg["train"]["compile_backend"]):
        return {"compiled": None}
    t0 = time.perf_counter()
    time_steps(task, batches, 1, 0, device)
    first = time.perf_counter() - t0
    c = statistics.median(time_steps(task, batches, warmup, repeats, device))
    return {"compiled_first_step_s": first, "compiled_step_s": c}


def bench_model(cfg, model, device, warmup, repeats, n_subjects, seed, workers, fast_only=False, compiled=False):
    tr, n_classes, channels = cfg["train"], 6, 1
    size, crop, bs = cfg["preprocess"]["size"], tr["crop"], tr["batch_size"]
    per_subject = max(6, (bs * (warmup + repeats + 2)) // n_subjects + 1)
    images, labels, subjects = synthetic_arrays(n_subjects, per_subject, size, channels, n_classes, seed)
    data = B.DeviceData.from_arrays(images, labels, subjects, device)
    pairs = B.PairIndex.build(data, np.arange(len(images)))
    gen = torch.Generator().manual_seed(seed)
    result = {"model": model, "batch_size": bs, "crop": crop, "size": size}
    fast = build_task(cfg, model, n_classes, channels, device, seed, fast=True)
    batcher = B.DeviceBatcher(data, crop, bs)

    def device_batches():
        return batcher.batches(B.make_plan(pairs, data.labels_cpu, n_classes, size, crop, gen))

    f = statistics.median(time_steps(fast, endless(device_batches), warmup, repeats, device))
    result.update(fast_step_s=f, fast_img_per_s=bs / f)
    batch = next(device_batches())
    batch["step"] = 0
    result["flops_per_image"] = flops_per_image(fast, batch)
    del fast
    if compiled:
        result.update(time_compiled(cfg, model, n_classes, channels, device, seed, endless(device_batches),
                                    warmup, repeats))
        if result.get("compiled_step_s"):
            result["compile_speedup"] = f / result["compiled_step_s"]
    if fast_only:       # concurrency runs: several processes share one device, only the fast path
        return result
    with tempfile.TemporaryDirectory() as tmp:
        write_pngs(images, Path(tmp))
        slow = build_task(cfg, model, n_classes, channels, device, seed, fast=False)
        slow_times = time_steps(slow, endless(lambda: png_batches(Path(tmp), B.make_plan(
            pairs, data.labels_cpu, n_classes, size, crop, gen), crop, channels, bs, device, workers)),
            warmup, repeats, device)
    s = statistics.median(slow_times)
    result.update(straightforward_step_s=s, straightforward_img_per_s=bs / s, speedup=s / f)
    return result


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the straightforward path")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="device peak; default H100 SXM bf16 dense 989 on CUDA, none on CPU")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fast-only", action="store_true", help="time only the fast path (for concurrent runs)")
    ap.add_argument("--compile", action="store_true",
                    help="also time the fast path under torch.compile (train.compile_backend); first step reported apart")
    ap.add_argument("--compile-backend", default=None, help="torch.compile backend (default: params train.compile_backend)")
    ap.add_argument("--fast-ops", choices=("auto", "yes", "no"), default=None,
                    help="train.fast_ops for every task (default: the params' value; auto = on with CUDA)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = config.load(a.params, a.profile)
    if a.fast_ops:
        cfg["train"]["fast_ops"] = a.fast_ops
    if a.compile_backend:
        cfg["train"]["compile_backend"] = a.compile_backend
    peak = a.peak_tflops if a.peak_tflops is not None else (989.0 if a.device.startswith("cuda") else None)
    rows = []
    for m in a.models:
        r = bench_model(cfg, m, a.device, a.warmup, a.repeats, a.subjects, a.seed, a.workers, a.fast_only, a.compile)
        if peak and r["flops_per_image"]:
            r["peak_fraction"] = r["flops_per_image"] * r["fast_img_per_s"] / (peak * 1e12)
        print(json.dumps(r), flush=True)
        rows.append(r)
    out = {"bench": "train_step", "profile": a.profile, "device": a.device, "peak_tflops": peak,
           "fast_ops": cfg["train"]["fast_ops"], "results": rows}
    if a.out:
        save(a.out, f"bench/train_step.py: seconds and images/s of one full training step per model, fast path "
                    f"against the straightforward path ({a.profile} profile, {a.device})", out)
    return out


if __name__ == "__main__":
    main()
