"""`fersnet train`: one model on one fold -> results/<db>/<model>/fold<k>/ (docs/architecture.md).

Files: config.json (resolved config + job), checkpoint.pt (every `train.checkpoint_every`
epochs), history.csv, predictions.csv, and metrics.json written last: its presence means the job
is complete, and a complete job started again does nothing.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fersnet import catalog, ownership, paths, provenance, seeds
from fersnet.config import wanted
from fersnet.device import resolve as resolve_device
from fersnet.errors import FersnetError, TrainingError, writing

def main(cfg: dict, args) -> dict:
    """CLI entry: train --db --model --fold [--device] [--out]."""
    metrics = train_job(cfg, args.db, args.model, args.fold, out=getattr(args, "out", None),
                        device=getattr(args, "device", None), force=getattr(args, "force", False))
    return {k: metrics.get(k) for k in ("db", "model", "fold", "accuracy", "selected_epoch", "seconds", "device")}


def set_deterministic(torch, mode: bool) -> None:
    """torch.use_deterministic_algorithms(mode, warn_only=True) without its 4 s import of
    torch._inductor (it sets inductor's flag too, which matters only with torch.compile, unused
    here): that import was ~20 % of a batched demo job's time on the 2-core CPU."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=True)
    else:
        setter(mode, warn_only=True)


def compile_task(task, backend: str, log=None) -> bool:
    """torch.compile the task's per-step networks; False (and a warning) where torch.compile is
    unavailable. Graphs that fail to compile later fall back to eager (dynamo's suppress_errors)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    try:
        import torch._dynamo
        torch._dynamo.config.suppress_errors = True
        task.compile_networks(backend)
    except Exception as e:          # e.g. a platform without torch.compile: train eagerly
        log(f"warning: torch.compile unavailable ({type(e).__name__}: {e}); training eagerly")
        return False
    return True


def train_epochs(tr: dict, n_train: int) -> int:
    """`train.epochs`, raised to reach at least `train.min_steps` generator steps when that is set.

    Databases differ in size (the CK+ stand-in has ~16 batches per epoch, MMI's ~9), so a step
    budget gives every database the same number of updates (docs/training.md).
    """
    from fersnet.training.batches import epochs_for_steps, n_batches
    return epochs_for_steps(tr["epochs"], tr.get("min_steps"), n_batches(n_train, int(tr["batch_size"])))


def fingerprint(cfg: dict, db: str, model: str, fold: int) -> provenance.Fingerprint:
    """The run's fingerprint (fersnet.provenance): params, processed data, seed, fold, and for
    fes_da and its control the checkpoint of the fersnet run they fine-tune."""
    inputs = {}
    source = catalog.model(model).fine_tunes
    if source:
        src = paths.run_dir(cfg, db, source, fold) / paths.CHECKPOINT
        if src.is_file():
            inputs[str(src)] = None
    return provenance.fingerprint(cfg, "train", db, model, fold, inputs)


def val_split(meta, train_rows: np.ndarray, share: float, seed: int, fold: int):
    """Hold out a share of the training *subjects* for model selection (never the test fold)."""
    subjects = np.array(sorted(set(meta["subject"].to_numpy()[train_rows].astype(str))))
    rng = np.random.default_rng(seeds.stream("val_split", seed, fold))
    n_val = min(len(subjects) - 1, max(1, int(round(share * len(subjects)))))
    val_subj = set(rng.choice(subjects, size=n_val, replace=False))
    is_val = np.isin(meta["subject"].to_numpy()[train_rows].astype(str), list(val_subj))
    return train_rows[~is_val], train_rows[is_val]


def train_job(cfg: dict, db: str, model: str, fold: int, out=None, device=None, hooks=None,
              force: bool = False, log=None) -> dict:
    """Train `model` on fold `fold` of `db`; returns metrics.

    A finished run made from the same inputs (fingerprint) is returned as it is; one made from
    other inputs is refused (provenance.StaleResult) unless `force`, which trains again in a
    staging folder and swaps it in only when complete.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    final_dir = Path(out) if out else paths.run_dir(cfg, db, model, fold)
    made_by = ownership.step("train", db, model, f"seed{int(cfg['seed'])}", f"fold{int(fold)}")
    ownership.check_data_roots(cfg, final_dir, "fersnet train")
    ownership.check_replaceable(final_dir, made_by)     # before reading it, not after the training
    ownership.clean_temps(final_dir)         # what a killed run left: checkpoint temporaries, staging
    fp = fingerprint(cfg, db, model, fold)
    done = provenance.reuse(final_dir / paths.METRICS, fp, force, log)   # before importing torch
    if done is not None:
        return done
    replacing = (final_dir / paths.METRICS).is_file()
    with writing(final_dir):                 # a full disk: one line naming the run folder (errors.DiskFull)
        if not replacing:
            return _train(cfg, db, model, fold, ownership.claim_folder(final_dir, made_by), fp, device, hooks, log)
        # --force over a finished run: train in a staging folder, the old run stays until the new one is complete
        with ownership.build_aside(final_dir, made_by, done=paths.METRICS) as run_dir:
            return _train(cfg, db, model, fold, run_dir, fp, device, hooks, log)


def _train(cfg, db, model, fold, run_dir: Path, fp, device, hooks, log) -> dict:
    import torch

    from fersnet.data.dataset import load_processed
    from fersnet.models import registry
    from fersnet.training import checkpoint as ck
    from fersnet.training.batches import DeviceBatcher, DeviceData, PairIndex
    from fersnet.training.loop import Hooks, LoopSpec, PlanEpochs, lr_schedule_factor, predict, run

    tr = cfg["train"]
    dev = resolve_device(tr["device"], device)
    if dev.type == "cpu":
        torch.set_num_threads(tr["threads"])
    set_deterministic(torch, dev.type == "cpu")

    data_all = load_processed(cfg, db)
    n_classes, channels, size = len(data_all.classes), data_all.channels, data_all.images.shape[1]
    if tr["crop"] > size:
        raise FersnetError(f"params: `train.crop` ({tr['crop']}) exceeds the stored face size {size} "
                           f"of {paths.processed_dir(cfg, db)}")
    train_rows, test_rows = data_all.split(fold)
    val_rows = np.zeros(0, np.int64)
    if tr["selection"] == "val":
        train_rows, val_rows = val_split(data_all.meta, train_rows, tr["val_subjects"], cfg["seed"], fold)
    labels = data_all.meta["label"].to_numpy().astype(np.int64)
    subjects = data_all.meta["subject"].to_numpy().astype(str)
    images = data_all.images

    # models are initialised from a seed of their own, so the result is a function of (seed, fold)
    torch.manual_seed(seeds.stream("init", cfg["seed"], fold))
    task = registry.build(model, cfg, n_classes, channels)
    task.set_fast_ops(wanted(tr["fast_ops"], dev))
    n_real = len(train_rows)
    epochs, extra = train_epochs(tr, len(train_rows)), {"n_train_synthetic": 0}
    # the schedule scales with the run's epochs (after min_steps raised them): docs/training.md
    lr_factor = lr_schedule_factor(tr["lr_schedule"], epochs, tr["lr_milestones"], tr["lr_gamma"],
                                   tr["lr_decay_fraction"])
    if model == "stargan":
        lr_factor = stargan_lr_factor(cfg, epochs)
    if catalog.model(model).fine_tunes:
        task, images, labels, subjects, train_rows = _prepare_fes_da(
            cfg, db, fold, model, task, images, labels, subjects, train_rows, n_classes, dev, data_all.classes, extra)
        epochs, lr_factor = cfg["fes_da"]["epochs"], (lambda epoch: 1.0)
    extra.update(training_set(labels, train_rows, n_real, data_all.classes))
    task.to(dev)
    if wanted(tr["fused_adam"], dev):
        task.use_fused_adam()
    if wanted(tr["compile"], dev):
        compile_task(task, tr["compile_backend"])
    if dev.type == "cuda":
        task.to(memory_format=torch.channels_last)
        task.autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)

    data = DeviceData.from_arrays(images, labels, subjects, dev)
    batcher = DeviceBatcher(data, tr["crop"], tr["batch_size"])
    meta = {"model": model, "n_classes": n_classes, "channels": channels, "crop": tr["crop"],
            "classes": list(data_all.classes)}
    state = _start_or_resume(run_dir, fp.digest, meta, task, ck, log)
    _write_config(run_dir, cfg, db, model, fold, dev, ck)

    def save(st: dict) -> None:
        ck.save(run_dir / paths.CHECKPOINT, st)
        ck.atomic_write_csv(run_dir / paths.HISTORY, st["history"])

    source = PlanEpochs(batcher, PairIndex.build(data, train_rows), n_classes, cfg["seed"], fold)
    spec = LoopSpec(source=source, epochs=epochs, lr_factor=lr_factor, checkpoint_every=tr["checkpoint_every"],
                    save=save, batcher=batcher, test_rows=test_rows, val_rows=val_rows,
                    label=f"{db}/{model}/fold{fold}", hooks=hooks or Hooks())
    state = run(task, spec, state)
    if state["epoch"] < epochs:     # stopped by a hook: the checkpoint is the result so far
        return {}

    if state.get("selected") is not None:
        task.load_state_dict(state["selected"])
    probs = predict(task, batcher, test_rows)
    _write_predictions(run_dir, data_all, test_rows, probs, ck)
    metrics = _metrics(cfg, db, model, fold, data_all.classes, labels[test_rows], probs, state, dev)
    metrics.update(extra)
    metrics["steps"] = int(state["epoch"]) * source.steps
    metrics.update(provenance.stamp(fp))
    ownership.write_json(run_dir / provenance.PROVENANCE, provenance.record(fp, cfg, str(dev)))
    ownership.write_json(run_dir / paths.METRICS, metrics)
    return metrics


def _start_or_resume(run_dir: Path, fp: str, meta: dict, task, ck, log) -> dict:
    """The checkpoint's state (model and optimizers restored) when it was made from the same
    inputs (fingerprint); otherwise a fresh state: training starts over, and the log says why."""
    path = run_dir / paths.CHECKPOINT
    fresh = {"epoch": 0, "meta": meta, "fingerprint": fp, "history": [], "selected": None,
             "selected_epoch": None, "best_val": None}
    if not path.is_file():
        return fresh
    try:
        state = ck.load(path)
    except TrainingError as e:
        log(f"fersnet train: {e}; training starts over")
        return fresh
    if state.get("fingerprint") != fp:
        log(f"fersnet train: {path} was made from other inputs (fingerprint {state.get('fingerprint')}, "
            f"now {fp}); training starts over")
        return fresh
    log(f"fersnet train: resuming {path} at epoch {state['epoch']} (same fingerprint {fp})")
    ck.restore_wall_times(state, run_dir / paths.HISTORY)
    task.load_state_dict(state["model"])
    for k, opt in task.optimizers.items():
        opt.load_state_dict(state["optimizers"][k])
    return state


def _write_config(run_dir: Path, cfg: dict, db: str, model: str, fold: int, dev, ck) -> None:
    job = {"db": db, "model": model, "fold": fold, "device": str(dev),
           "git_commit": provenance.code_version()["git_commit"],
           "code_version": provenance.code_label(provenance.code_version()),
           "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    ownership.write_json(run_dir / paths.CONFIG, {**cfg, "job": job})


def _write_predictions(run_dir: Path, data_all, test_rows, probs, ck) -> None:
    meta = data_all.meta
    rows = []
    for i, r in enumerate(test_rows):
        row = {"index": int(r), "subject": str(meta["subject"].iloc[r]), "true": int(meta["label"].iloc[r])}
        if probs is not None:
            row["pred"] = int(probs[i].argmax())
            row.update({f"prob_{c}": round(float(p), 6) for c, p in zip(data_all.classes, probs[i])})
        rows.append(row)
    columns = ["index", "subject", "true"] + (["pred"] + [f"prob_{c}" for c in data_all.classes]
                                              if probs is not None else [])
    ck.atomic_write_csv(run_dir / paths.PREDICTIONS, rows, columns)


def _metrics(cfg, db, model, fold, classes, y_true, probs, state, dev) -> dict:
    history = state["history"]
    tests = [(h["test_acc_diagnostic"], h["epoch"]) for h in history if h.get("test_acc_diagnostic") is not None]
    best = max(tests, key=lambda t: (t[0], -t[1])) if tests else (None, None)
    selection = cfg["train"]["selection"] if state.get("selected") is not None else "last"
    out = {"db": db, "model": model, "fold": fold, "classes": list(classes), "accuracy": None,
           "balanced_accuracy": None, "macro_f1": None, "per_class_recall": None, "confusion": None,
           "n_test": int(len(y_true)),
           "selected_epoch": state.get("selected_epoch") or state["epoch"], "selection": selection,
           # the selected epoch's accuracy on the held-out training subjects (selection `val`; else null):
           # what a user tuning a setting compares, never `accuracy` (docs/training.md, "Tuning")
           "val_accuracy": state.get("best_val") if selection == "val" else None,
           "best_epoch_test_accuracy": best[0], "best_epoch": best[1],
           "best_epoch_note": "diagnostic only: chosen on the test fold (R2021's optimistic selection)",
           "epochs": state["epoch"], "seconds": round(sum(h["seconds"] for h in history), 3),
           "device": str(dev)}
    if probs is not None:          # StarGAN has no FER branch: its metrics stay null
        from fersnet.training.classification import classification_metrics
        out.update(classification_metrics(y_true, probs.argmax(1), list(classes)))
    return out


def training_set(labels: np.ndarray, rows: np.ndarray, n_real: int, classes) -> dict:
    """metrics.json's account of what the job trained on: real faces, synthetic ones (FES-DA),
    samples per epoch and samples per class (after augmentation)."""
    counts = np.bincount(labels[rows], minlength=len(classes))
    return {"n_train_real": int(n_real), "n_train": int(len(rows)),
            "train_class_counts": {c: int(k) for c, k in zip(classes, counts)}}


def stargan_lr_factor(cfg: dict, epochs: int):
    """StarGAN's schedule (`stargan.lr_decay`): `linear`, the original's (yunjey/stargan): the
    learning rate stays for the first half of training and falls linearly to zero over the
    second half; `none`: constant."""
    from fersnet.training.loop import linear_decay_factor
    if cfg["stargan"]["lr_decay"] == "linear":
        return linear_decay_factor(epochs, epochs // 2)
    return lambda epoch: 1.0


def _prepare_fes_da(cfg, db, fold, model, task, images, labels, subjects, train_rows, n_classes, dev,
                    classes, extra):
    """Load the fold's fersnet and switch to fine-tuning its FER side: fes_da on the real faces and
    their synthesized renderings, the control fes_da_real on the real faces repeated to the same
    number of samples (fes_da.py)."""
    from fersnet.models.registry import generator_state
    from fersnet.models.tasks import FerFinetuneTask
    from fersnet.training import checkpoint as ck
    from fersnet.training import fes_da as fes_da_mod

    src_dir = paths.run_dir(cfg, db, catalog.model(model).fine_tunes, fold)
    if not (src_dir / paths.METRICS).is_file() or not (src_dir / paths.CHECKPOINT).is_file():
        raise TrainingError(f"{src_dir}: no finished fersnet run; {model} fine-tunes it, so run "
                            f"`fersnet train --db {db} --model fersnet --fold {fold}` first")
    state = ck.load(src_dir / paths.CHECKPOINT)
    if state["meta"]["n_classes"] != n_classes or state["meta"]["crop"] != cfg["train"]["crop"]:
        raise TrainingError(f"{src_dir / paths.CHECKPOINT}: made for {state['meta']['n_classes']} classes / "
                            f"crop {state['meta']['crop']}, not {n_classes} / {cfg['train']['crop']}")
    try:
        task.gen.load_state_dict(generator_state(state.get("selected") or state["model"]))
    except RuntimeError as e:
        raise TrainingError(f"{src_dir / paths.CHECKPOINT}: does not fit the current `model` settings "
                            f"({str(e).splitlines()[0]}); retrain fersnet for this fold") from None
    info = {"source_run": str(src_dir), "per_class": cfg["fes_da"]["per_class"],
            "real_share": cfg["fes_da"]["real_share"]}
    if model == "fes_da_real":
        train_rows = fes_da_mod.control_rows(labels, train_rows, n_classes, cfg, fold)
        extra.update(n_train_synthetic=0, fes_da=info)
        return FerFinetuneTask(task.gen, cfg, n_classes), images, labels, subjects, train_rows
    task.to(dev)
    syn_imgs, syn_labels, syn_src, real = fes_da_mod.augment(task, images, labels, train_rows, n_classes, cfg,
                                                             fold, dev)
    n = len(images)
    images = np.concatenate([images, syn_imgs]) if len(syn_imgs) else images
    labels = np.concatenate([labels, syn_labels])
    subjects = np.concatenate([subjects, subjects[syn_src]])
    train_rows = np.concatenate([real, np.arange(n, n + len(syn_imgs))])
    info["added"] = {c: int(k) for c, k in zip(classes, np.bincount(syn_labels, minlength=n_classes))}
    extra.update(n_train_synthetic=int(len(syn_imgs)), fes_da=info)
    return FerFinetuneTask(task.gen, cfg, n_classes), images, labels, subjects, train_rows
