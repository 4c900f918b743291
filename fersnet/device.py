"""Which device a job runs on: the one place `train.device` / `--device` is read (docs/architecture.md).

`resolve` is what train, judge and score call (it imports torch); `may_use_cuda`, `workflow_gpus`
and `uses_gpu` decide GPU use without importing torch (the CLI before a job claims its GPU slot,
and the workflow when it sets its GPU resources).
"""
from __future__ import annotations

from fersnet.errors import DeviceError

CHOICES = ("auto", "cuda", "mps", "cpu")    # train.device and --device: auto picks cuda, mps, cpu


def resolve(setting: str | None, override: str | None = None):
    """`train.device` (`setting`) or a `--device` override -> a torch.device. `auto` picks CUDA,
    then MPS, then the CPU; an explicit choice this machine lacks is a DeviceError."""
    import torch

    name = override or setting or "auto"
    key = "--device" if override else "train.device"
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if name not in CHOICES:
        raise DeviceError(f"`{key}` is {name!r}; choose one of {', '.join(CHOICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"`{key}` is cuda but no CUDA device is available")
    if name == "mps" and not mps:
        raise DeviceError(f"`{key}` is mps but MPS is not available")
    return torch.device(name)


def may_use_cuda(name: str | None) -> bool:
    """Whether a device setting can end up on CUDA (None: the setting is not given, auto)."""
    return (name or "auto") in ("auto", "cuda")


def workflow_gpus(setting: str) -> list[str]:
    """The GPU ids a workflow with `train.device` = `setting` schedules its jobs on, found without
    importing torch (fersnet.gpu_slots.devices); none when the setting cannot use CUDA."""
    from fersnet import gpu_slots
    return gpu_slots.devices() if may_use_cuda(setting) else []


def uses_gpu(setting: str, gpus: list[str]) -> bool:
    """Whether the workflow's jobs run on a GPU: an explicit cuda or mps, or auto with a GPU found."""
    return setting in ("cuda", "mps") or bool(gpus)
