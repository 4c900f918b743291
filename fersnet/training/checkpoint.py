"""Checkpoints that load with `torch.load(weights_only=True)`, and the run's CSV files.

A checkpoint holds only tensors and plain Python values: `epoch`, `meta`, `fingerprint`,
`model` (task state dict), `optimizers` (state dicts), `history` (list of dicts of numbers),
`selected` (state dict of the selected epoch, or None = the last), `selected_epoch`,
`best_val`, `rng` (torch CPU RNG state; exact resume comes from per-epoch seeds anyway).

No wall-clock time goes into a checkpoint: the history rows are saved without their `seconds`
(WALL_TIMES), which history.csv and metrics.json keep. Identical training therefore writes an
identical checkpoint.pt, byte for byte, and the fingerprints that hash it (the scoring job's,
FES-DA's) are identical too; on resume the times come back from history.csv (`restore_wall_times`).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from fersnet import ownership
from fersnet.errors import TrainingError

WALL_TIMES = ("seconds",)      # keys of a history row that measure time, not the result


def atomic_write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """rows -> CSV with the union of keys as columns (first-seen order); missing cells empty;
    written safely (fersnet.ownership.write_text)."""
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    ownership.write_text(path, buf.getvalue(), ownership.step("train"))


def without_wall_times(state: dict) -> dict:
    """`state` with its history rows stripped of wall-clock times (a shallow copy)."""
    if not state.get("history"):
        return state
    return {**state, "history": [{k: v for k, v in row.items() if k not in WALL_TIMES}
                                 for row in state["history"]]}


def save(path: Path, state: dict) -> None:
    """torch.save, written safely (fersnet.ownership.write_bytes); no wall-clock time is saved."""
    buf = io.BytesIO()
    torch.save(without_wall_times(state), buf)
    ownership.write_bytes(path, buf.getvalue(), ownership.step("train"))


def restore_wall_times(state: dict, history_csv: Path) -> dict:
    """Put the epochs' `seconds` of history.csv (written with every checkpoint) back into the
    history of a loaded checkpoint; an epoch the file lacks (or an unreadable file) gets 0.0,
    so a resumed run's total time may miss the epochs of a save cut short. Returns `state`."""
    seconds: dict[int, float] = {}
    try:
        with open(history_csv, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    seconds[int(float(row["epoch"]))] = float(row["seconds"])
                except (KeyError, TypeError, ValueError):
                    continue
    except (OSError, csv.Error, UnicodeDecodeError):
        pass
    for row in state.get("history") or []:
        for key in WALL_TIMES:
            row.setdefault(key, seconds.get(int(row.get("epoch", 0)), 0.0))
    return state


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
