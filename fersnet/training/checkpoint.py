"""Atomic file writes and checkpoints that load with `torch.load(weights_only=True)`.

A checkpoint holds only tensors and plain Python values: `epoch`, `meta`, `fingerprint`,
`model` (task state dict), `optimizers` (state dicts), `history` (list of dicts of numbers),
`selected` (state dict of the selected epoch, or None = the last), `selected_epoch`,
`best_val`, `rng` (torch CPU RNG state; exact resume comes from per-epoch seeds anyway).
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import torch

from fersnet import ownership
from fersnet.errors import TrainingError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, then rename: readers never see half a file.

    The temporary is named by fersnet.ownership.temp_path, so the next run removes it should
    this process be killed while writing (ownership.clean_temps).
    """
    path = Path(path)
    ownership.create_dirs(path.parent, ownership.step("train"))   # the run folder exists
    tmp = ownership.temp_path(path)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        ownership.pause_point(f"write:{path.name}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """rows -> CSV with the union of keys as columns (first-seen order); missing cells empty."""
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def save(path: Path, state: dict) -> None:
    """torch.save to a temporary sibling, then rename."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: Path) -> dict:
    """Load a checkpoint safely (weights_only); a corrupt file is a TrainingError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is reported with the file
        raise TrainingError(f"{path}: cannot load checkpoint ({type(e).__name__}: {e}); "
                            "delete it to start this run again") from None


def clone_state(state: dict) -> dict:
    """A detached copy of a state dict (to keep the selected epoch's weights)."""
    return {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in state.items()}
