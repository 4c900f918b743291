"""The training loop shared by every model and the judge: epochs of `task.train_step`, evaluation, checkpoints.

What an epoch trains on comes from an epoch source (`steps`, `batches(epoch)`): the models'
`PlanEpochs`, or the judge's own (fersnet.metrics.judge). How an epoch's step outputs become
its history row is a meter: `StepMeans` (the models: the mean over steps) or `SampleMeans` (the
judge: the mean over samples).

Exact resume: each epoch's randomness (batch plan and torch's global RNG used inside the step)
comes from the seed streams `epoch_plan` and `epoch_steps` of (seed, fold, epoch)
(fersnet.seeds), and checkpoints are taken at epoch boundaries, so a run restarted from the
checkpoint of epoch k replays epochs k+1.. exactly as an uninterrupted run would (on CPU).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from fersnet.errors import TrainingError
from fersnet.seeds import stream
from fersnet.training import checkpoint as ckpt_mod
from fersnet.training.batches import DeviceBatcher, PairIndex, make_plan, n_batches


@dataclass
class Hooks:
    """Hooks for tests and benchmarks: `on_batch(epoch, step, batch)` may alter a batch;
    `on_epoch(epoch, task)` may look at the model after each epoch (bench/synthesis_curve.py);
    `after_epoch(epoch)` may stop the run."""

    on_batch: Callable | None = None
    on_epoch: Callable | None = None
    after_epoch: Callable | None = None


class PlanEpochs:
    """The models' epochs: each drawn as an `EpochPlan` of source/target pairs from the stream
    `epoch_plan`, with torch's global RNG reseeded from `epoch_steps`, gathered by the batcher."""

    def __init__(self, batcher: DeviceBatcher, pairs: PairIndex, n_classes: int, seed: int, fold: int):
        self.batcher, self.pairs, self.n_classes, self.seed, self.fold = batcher, pairs, n_classes, seed, fold

    @property
    def steps(self) -> int:
        return n_batches(len(self.pairs.rows), self.batcher.batch_size)

    def batches(self, epoch: int):
        torch.manual_seed(stream("epoch_steps", self.seed, self.fold, epoch))
        gen = torch.Generator().manual_seed(stream("epoch_plan", self.seed, self.fold, epoch))
        data = self.batcher.data
        plan = make_plan(self.pairs, data.labels_cpu, self.n_classes, data.size, self.batcher.crop, gen)
        return self.batcher.batches(plan)


class StepMeans:
    """An epoch's row from its step outputs: each output's mean over the steps (float32 sums)."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, out: dict, batch: dict) -> None:
        for k, v in out.items():
            self.sums[k] = self.sums.get(k, 0) + v.float()
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict:
        return {k: float(self.sums[k]) / self.counts[k] for k in self.sums}


class SampleMeans:
    """An epoch's row from its step outputs: each output's mean over the samples (the judge). A
    floating-point output is its batch's mean, weighted by the batch's size; an integer one is a
    count over the batch (e.g. correct predictions). Sums in Python floats."""

    def __init__(self):
        self.sums: dict[str, float | int] = {}
        self.seen = 0

    def add(self, out: dict, batch: dict) -> None:
        n = len(batch["x"])
        for k, v in out.items():
            value = float(v.detach()) * n if v.is_floating_point() else int(v)
            self.sums[k] = self.sums.get(k, 0) + value
        self.seen += n

    def means(self) -> dict:
        return {k: v / max(self.seen, 1) for k, v in self.sums.items()}


CHECKPOINT_KEPT = "the last good checkpoint is kept (lower the learning rate?)"


@dataclass
class LoopSpec:
    """What one run of the loop needs besides the task."""

    source: object                # `steps` and `batches(epoch)`: PlanEpochs, or the judge's
    epochs: int
    lr_factor: Callable[[int], float]
    checkpoint_every: int = 1
    save: Callable[[dict], None] | None = None   # writes checkpoint + history; None: the caller saves after the run
    batcher: DeviceBatcher | None = None          # centre crops of the per-epoch evaluation; None: no evaluation
    test_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    val_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # empty unless selection is `val`
    meter: Callable[[], object] = StepMeans
    nonfinite_hint: str = CHECKPOINT_KEPT   # what a NaN/inf loss's error tells the user to do
    label: str = ""
    hooks: Hooks = field(default_factory=Hooks)


LR_SCHEDULES = ("multistep", "linear", "constant")


def multistep_factor(milestones: list[int], gamma: float) -> Callable[[int], float]:
    """MultiStepLR as a function of the (1-based) epoch: gamma ** (milestones passed)."""
    def factor(epoch: int) -> float:
        return gamma ** sum(1 for m in milestones if epoch > m)
    return factor


def milestone_epochs(fractions: list[float], epochs: int) -> list[int]:
    """`train.lr_milestones` (fractions of the run) as epochs of a run of `epochs`: each fraction
    times the epochs, rounded to the nearest epoch (halves up), at least 1, so that the first epoch
    always trains at the base rate. 0.3 and 0.8 of 500 epochs are 150 and 400, of 20 epochs 6 and 16."""
    return [max(1, math.floor(f * epochs + 0.5)) for f in fractions]


def lr_schedule_factor(schedule: str, epochs: int, milestones: list[float], gamma: float,
                       decay_fraction: float = 1.0) -> Callable[[int], float]:
    """The FER models' learning-rate factor per (1-based) epoch for a run of `epochs` epochs
    (`train.lr_schedule`, docs/training.md): `multistep`, MultiStepLR at `milestones` (fractions
    of the run) by `gamma`; `linear`, 1 until the last `decay_fraction` of the run (its last
    ceil(decay_fraction * epochs) epochs), then falling linearly to 1/that many in the last epoch
    (`decay_fraction` 1: from the first epoch); `constant`, 1. A function of the epoch only, so a
    resumed run gets the same rates."""
    if schedule == "multistep":
        return multistep_factor(milestone_epochs(milestones, epochs), gamma)
    if schedule == "linear":
        return linear_decay_factor(epochs, math.ceil(decay_fraction * epochs))
    if schedule == "constant":
        return lambda epoch: 1.0
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; allowed: {', '.join(LR_SCHEDULES)}")


def linear_decay_factor(epochs: int, decay_epochs: int) -> Callable[[int], float]:
    """1 until the last `decay_epochs` epochs, then falling linearly to 1/decay_epochs in the
    last epoch, so the rate reaches zero as training ends (StarGAN, Choi et al. 2018: yunjey/stargan
    lowers it by lr/decay after each epoch of the decay phase)."""
    def factor(epoch: int) -> float:
        if decay_epochs <= 0:
            return 1.0
        return min(1.0, (epochs - epoch + 1) / decay_epochs)
    return factor


@torch.no_grad()
def predict(task, batcher: DeviceBatcher, rows) -> np.ndarray | None:
    """Softmax probabilities (n, classes) of the centre crops of rows; None without a FER branch."""
    if not task.has_classifier or len(rows) == 0:
        return None
    task.eval()
    probs = []
    for x in batcher.center(rows):
        with task.autocast():
            logits = task.classify(x)
        probs.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(probs).numpy()


def accuracy(probs: np.ndarray | None, labels: np.ndarray) -> float | None:
    if probs is None:
        return None
    return float((probs.argmax(1) == labels).mean())


def check_finite(out: dict, epoch: int, step: int,
                 hint: str = CHECKPOINT_KEPT) -> None:
    """Stop on a NaN/inf loss, naming epoch, step, the loss and what to do (`hint`)."""
    values = torch.stack([v.float().reshape(()) for v in out.values()])
    if bool(torch.isfinite(values).all()):
        return
    bad = [k for k, v in out.items() if not bool(torch.isfinite(v).all())]
    raise TrainingError(f"non-finite loss at epoch {epoch}, step {step}: {', '.join(bad)}; {hint}")


def _progress(total: int, label: str, initial: int):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=label, unit="step", leave=False,
                disable=not sys.stderr.isatty(), dynamic_ncols=True)


def epoch_line(label: str, epoch: int, epochs: int, row: dict) -> str:
    """`ckplus/fersnet/fold0: epoch 3/20 in 4.1 s, train acc 45.2 %, test acc 40.1 % (diagnostic)`."""
    text = f"{label}: epoch {epoch}/{epochs} in {row['seconds']:.1f} s"
    for key, name in (("train_acc", "train acc"), ("test_acc_diagnostic", "test acc")):
        if row.get(key) is not None:
            text += f", {name} {100 * row[key]:.1f} %"
    return text + (" (diagnostic)" if row.get("test_acc_diagnostic") is not None else "")


def run(task, spec: LoopSpec, state: dict) -> dict:
    """Train from state['epoch'] + 1 to spec.epochs; `state` is the checkpoint dict (updated in place)."""
    steps = spec.source.steps
    bar = _progress(spec.epochs * steps, spec.label, state["epoch"] * steps)
    try:
        for epoch in range(state["epoch"] + 1, spec.epochs + 1):
            row = _train_epoch(task, spec, epoch, steps, bar)
            if spec.batcher is not None:
                _evaluate_epoch(task, spec, state, epoch, row, spec.batcher.data.labels_cpu)
            state["history"].append(row)
            state["epoch"] = epoch
            if spec.save is not None and (epoch % spec.checkpoint_every == 0 or epoch == spec.epochs):
                state["model"] = task.state_dict()
                state["optimizers"] = {k: o.state_dict() for k, o in task.optimizers.items()}
                state["rng"] = torch.get_rng_state()
                spec.save(state)
            if bar.disable:           # no progress bar (output to a log file): a line per epoch instead
                print(epoch_line(spec.label, epoch, spec.epochs, row), file=sys.stderr, flush=True)
            if spec.hooks.on_epoch:
                spec.hooks.on_epoch(epoch, task)
            if spec.hooks.after_epoch:
                spec.hooks.after_epoch(epoch)
    finally:
        bar.close()
    return state


def _train_epoch(task, spec: LoopSpec, epoch: int, steps: int, bar) -> dict:
    t0 = time.perf_counter()
    batches = spec.source.batches(epoch)
    task.set_lr_factor(spec.lr_factor(epoch))
    task.train()
    meter = spec.meter()
    for step, batch in enumerate(batches):
        batch["step"] = (epoch - 1) * steps + step
        if spec.hooks.on_batch:
            spec.hooks.on_batch(epoch, step, batch)
        out = task.train_step(batch)
        check_finite(out, epoch, step, spec.nonfinite_hint)
        meter.add(out, batch)
        bar.update(1)
        if step % 10 == 0:
            shown = {k: v for k, v in out.items() if k.endswith("/loss") or k in ("C/loss_ce", "loss")}
            bar.set_postfix({k: f"{float(v):.3f}" for k, v in shown.items()})
    means = meter.means()
    row: dict = {"epoch": epoch}
    row.update({k: means[k] for k in sorted(means) if k != "train_acc"})
    row["train_acc"] = means.get("train_acc")
    row["lr"] = task.current_lr()
    row["seconds"] = time.perf_counter() - t0
    return row


def _evaluate_epoch(task, spec: LoopSpec, state: dict, epoch: int, row: dict, labels) -> None:
    """Test accuracy (diagnostic only) and, with selection `val`, the validation choice."""
    row["test_acc_diagnostic"] = accuracy(predict(task, spec.batcher, spec.test_rows), labels[spec.test_rows])
    if len(spec.val_rows) and task.has_classifier:
        val = accuracy(predict(task, spec.batcher, spec.val_rows), labels[spec.val_rows])
        row["val_acc"] = val
        if state.get("best_val") is None or val > state["best_val"]:
            state["best_val"] = val
            state["selected_epoch"] = epoch
            state["selected"] = ckpt_mod.clone_state(task.state_dict())
