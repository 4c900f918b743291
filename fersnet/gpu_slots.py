"""One GPU per job: a machine-wide pool of device slots (docs/orchestration.md, "GPU").

Snakemake limits how many GPU jobs run at once (the `gpu_share` resource) but does not say which
device each job should use: without this, every job trains on `cuda` = device 0 and the other GPUs
idle. A GPU job (train, judge, score) therefore takes a slot before it imports torch: one of
`orchestration.gpu_jobs_per_device` slots of the least busy device, held as an exclusive file lock
for the life of the process (released by the OS even when the process is killed), and exposes only
that device to itself through CUDA_VISIBLE_DEVICES.

The devices are found without importing torch: CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`.
Under SLURM (SLURM_JOB_ID set) the scheduler has already assigned the job its GPU: nothing is done.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fersnet.device import may_use_cuda

ENV_DEVICES = "FERSNET_GPUS"            # overrides the device list (e.g. "0,1,2,3"); "" = none
ENV_SLOTS_DIR = "FERSNET_GPU_SLOTS_DIR"


def devices() -> list[str]:
    """The GPU ids this machine offers, without importing torch."""
    if ENV_DEVICES in os.environ:
        return [d for d in os.environ[ENV_DEVICES].split(",") if d.strip()]
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return [d for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def slots_dir() -> Path:
    return Path(os.environ.get(ENV_SLOTS_DIR) or Path(tempfile.gettempdir()) / f"fersnet-gpu-slots-{os.getuid()}")


class Slot:
    """A held slot: `device` is the GPU id; the lock lasts until release() or the process ends."""

    def __init__(self, device: str, fd: int, path: Path):
        self.device, self._fd, self.path = device, fd, path

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _try(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


def _busy(folder: Path, device: str, per_device: int) -> int:
    """How many slots of `device` other processes hold now (probed without keeping any)."""
    n = 0
    for j in range(per_device):
        fd = _try(folder / f"gpu{device}.slot{j}")
        if fd is None:
            n += 1
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
    return n


def acquire(per_device: int, devs: list[str] | None = None, poll_s: float = 0.2,
            timeout_s: float | None = None, on_wait=None) -> Slot | None:
    """A free slot on the least busy device, waiting for one if all are taken; None without GPUs."""
    devs = devices() if devs is None else devs
    if not devs:
        return None
    folder = slots_dir()
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    while True:
        for device in sorted(devs, key=lambda d: _busy(folder, d, per_device)):
            for j in range(per_device):
                path = folder / f"gpu{device}.slot{j}"
                fd = _try(path)
                if fd is not None:
                    return Slot(device, fd, path)
        if on_wait is not None:
            on_wait(folder)
            on_wait = None
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"no free GPU slot in {folder} after {timeout_s:.0f}s")
        time.sleep(poll_s)


_held: Slot | None = None


def claim_for_job(cfg: dict, log=None) -> str | None:
    """Before torch is imported: pin this process to one GPU slot when it will run on CUDA.

    Returns the device id taken (and sets CUDA_VISIBLE_DEVICES to it), or None when the job does
    not run on a GPU, runs under SLURM, or has only one device to choose from and no sharing limit
    to keep.
    """
    global _held
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if _held is not None:
        return _held.device
    if not may_use_cuda(cfg["train"]["device"]) or os.environ.get("SLURM_JOB_ID"):
        return None
    devs = devices()
    if not devs:
        return None
    per_device = int(cfg["orchestration"]["gpu_jobs_per_device"])
    _held = acquire(per_device, devs, on_wait=lambda folder: log(
        f"fersnet: every GPU slot is taken ({per_device} job(s) per device on {','.join(devs)}, "
        f"orchestration.gpu_jobs_per_device; locks in {folder}); waiting for one"))
    os.environ["CUDA_VISIBLE_DEVICES"] = _held.device
    log(f"fersnet: GPU slot {_held.path.name} taken: this job runs on device {_held.device} of {','.join(devs)}")
    return _held.device
