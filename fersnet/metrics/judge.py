"""The standard FER model (`judge`) that scores synthesized faces (docs/scoring.md).

torchvision's ResNet-18 with its stem adapted to small faces (3x3 conv, stride 1, no
max-pool, `in_channels` = data channels), trained from scratch on one fold's real
training images only, with random crop + horizontal flip, Adam under a one-cycle learning
rate (`judge.schedule`), label smoothing (`judge.label_smoothing`) and, at test time, the
average of the face and its mirror image (`judge.tta_flip`). `judge.width` scales the
64-128-256-512 channels so that the CPU demo stays at seconds per fold; at 1.0 the
network is exactly torchvision's ResNet-18 with the adapted stem. The judge trains through
the models' loop (fersnet.training.loop) as a task of its own (`JudgeTask`, `JudgeEpochs`) and
writes its checkpoint and history with the models' writers (fersnet.training.checkpoint).

    fersnet judge --db <db> --fold <k>  ->  results/<db>/judge/fold<k>/
        config.json, checkpoint.pt, history.csv, metrics.json (written last)
"""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fersnet import ownership, paths, provenance
from fersnet.device import resolve as resolve_device
from fersnet.errors import CheckpointError, DataError, FersnetError
from fersnet.metrics.common import centre_crop, staged_outputs, to_tensor, write_json
from fersnet.models.registry import read_checkpoint
from fersnet.seeds import stream


def build_judge(in_channels: int, n_classes: int, width: float = 1.0):
    """ResNet-18 (torchvision's ResNet with BasicBlock x [2, 2, 2, 2]) with a small-image stem."""
    import torch
    from torch import nn
    from torchvision.models.resnet import BasicBlock, ResNet

    class JudgeNet(ResNet):
        def __init__(self):
            self._width = width
            self._first_layer = True
            super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=n_classes)
            stem = self.layer1[0].conv1.in_channels
            # 3x3 stride-1 stem and no max-pool: a 7x7/2 conv plus pooling would shrink a
            # 32-pixel face to 8 pixels before the first residual block (CIFAR-style ResNet).
            self.conv1 = nn.Conv2d(in_channels, stem, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
            self.bn1 = nn.BatchNorm2d(stem)
            self.maxpool = nn.Identity()
            self.fc = nn.Linear(self.layer4[-1].conv2.out_channels, n_classes)

        def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
            scaled = max(1, int(round(planes * self._width)))
            if self._first_layer:  # the stem's width follows layer1's
                self.inplanes = scaled
                self._first_layer = False
            return super()._make_layer(block, scaled, blocks, stride, dilate)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            """Penultimate (global-average-pooled) features, used for the judge's Frechet distance."""
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return torch.flatten(self.avgpool(x), 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.features(x))

    return JudgeNet()


def _augment(batch, crop: int, gen):
    """Random crop + horizontal flip of a float (B, C, H, W) batch (the training augmentation).

    One gather for the whole batch: the same draws (tops, lefts, flips, in this order) and the
    same pixels as cropping and flipping image by image."""
    import torch
    b, c, h, w = batch.shape
    tops = torch.randint(0, h - crop + 1, (b,), generator=gen).to(batch.device)
    lefts = torch.randint(0, w - crop + 1, (b,), generator=gen).to(batch.device)
    flips = torch.rand(b, generator=gen).lt(0.5).to(batch.device)
    offs = torch.arange(crop, device=batch.device)
    rows = tops[:, None] + offs
    cols = torch.where(flips[:, None], lefts[:, None] + (crop - 1) - offs, lefts[:, None] + offs)
    return batch[torch.arange(b, device=batch.device)[:, None, None, None],
                 torch.arange(c, device=batch.device)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]


def _logits(model, x):
    """Logits of a float batch; with the model's `tta_flip`, the mean over the batch and its mirror."""
    if getattr(model, "tta_flip", False):
        return (model(x) + model(x.flip(-1))) / 2
    return model(x)


def predict(model, images: np.ndarray, device: str = "cpu", batch_size: int = 256) -> np.ndarray:
    """Logits (N, classes) of uint8 (N, h, w, C) images already at the judge's input size
    (averaged with the mirror images' when the judge was trained with `judge.tta_flip`)."""
    return predict_and_features(model, images, device, batch_size, with_features=False)[0]


def features(model, images: np.ndarray, device: str = "cpu", batch_size: int = 256) -> np.ndarray:
    """Penultimate features (N, d) of uint8 (N, h, w, C) images at the judge's input size."""
    import torch
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            out.append(model.features(to_tensor(images[i:i + batch_size], device)).cpu())
    return torch.cat(out).numpy().astype(np.float64)


def predict_and_features(model, images: np.ndarray, device: str = "cpu", batch_size: int = 256,
                         with_features: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(`predict`, `features`) of the same images from one forward pass of the unmirrored faces
    (the scoring job needs both for every synthesized face)."""
    import torch
    logits, feats = [], []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = to_tensor(images[i:i + batch_size], device)
            f = model.features(x)
            lg = model.fc(f)
            if getattr(model, "tta_flip", False):
                lg = (lg + model(x.flip(-1))) / 2
            logits.append(lg.cpu())
            if with_features:
                feats.append(f.cpu())
    n_classes = model.fc.out_features
    lg = torch.cat(logits).numpy() if logits else np.zeros((0, n_classes), np.float32)
    if not with_features:
        return lg, None
    ft = torch.cat(feats).numpy().astype(np.float64) if feats else np.zeros((0, model.fc.in_features))
    return lg, ft


def judge_epochs(jcfg: dict, n_train: int) -> int:
    """`judge.epochs`, raised to reach at least `judge.min_steps` optimizer steps when that is set
    (the models' rule, fersnet.training.batches.epochs_for_steps; a batch of one face is no step)."""
    from fersnet.training.batches import epochs_for_steps, n_batches
    per_epoch = n_batches(n_train, int(jcfg["batch_size"]), keep_partial=True)
    return epochs_for_steps(jcfg["epochs"], jcfg.get("min_steps"), per_epoch)


class JudgeEpochs:
    """The judge's epochs for the training loop (fersnet.training.loop): shuffled batches of the
    training faces, a trailing batch of one dropped (`index_batches`), each randomly cropped and
    flipped (`_augment`); one generator draws them all, epoch after epoch."""

    def __init__(self, x_train, y_train, batch_size: int, crop: int, generator):
        self.x, self.y, self.batch_size, self.crop, self.gen = x_train, y_train, int(batch_size), crop, generator

    @property
    def steps(self) -> int:
        from fersnet.training.batches import n_batches
        return n_batches(len(self.x), self.batch_size, keep_partial=True)

    def batches(self, epoch: int):
        from fersnet.training.batches import index_batches
        for idx in index_batches(len(self.x), self.batch_size, self.gen):
            yield {"x": _augment(self.x[idx], self.crop, self.gen), "y": self.y[idx]}


class JudgeTask:
    """The judge as a task of the training loop: its network, its loss (cross-entropy with
    `judge.label_smoothing`) and its optimizer: Adam at `judge.lr`, under `judge.schedule`
    (`onecycle`: a rate stepped per batch), so the loop's per-epoch rate factor does not apply."""

    def __init__(self, model, jcfg: dict, total_steps: int):
        import torch
        self.model = model
        self.opt = torch.optim.Adam(model.parameters(), lr=jcfg["lr"], weight_decay=jcfg["weight_decay"])
        self.optimizers = {"judge": self.opt}
        self.sched = None
        if jcfg["schedule"] == "onecycle":
            # torch's OneCycleLR: warm up to `judge.lr` over the first 30 % of the steps, then cosine
            # annealing to lr / 2.5e5 at the last one (its defaults; no momentum cycling, Adam)
            self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=jcfg["lr"],
                                                             total_steps=max(1, total_steps), cycle_momentum=False)
        self.smoothing = float(jcfg["label_smoothing"])
        self.lr_used = self.opt.param_groups[0]["lr"]

    def set_lr_factor(self, factor: float) -> None:
        """Start of an epoch: the rate is the one-cycle schedule's, whatever the factor."""
        self.lr_used = self.opt.param_groups[0]["lr"]

    def current_lr(self) -> float:
        """The rate of the last optimizer step."""
        return self.lr_used

    def train(self) -> None:
        self.model.train()

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def train_step(self, batch: dict) -> dict:
        """One Adam step; returns the batch's mean loss and its count of correct predictions."""
        from torch import nn
        logits = self.model(batch["x"])
        loss = nn.functional.cross_entropy(logits, batch["y"], label_smoothing=self.smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.lr_used = self.opt.param_groups[0]["lr"]
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        return {"loss": loss.detach(), "train_acc": (logits.argmax(1) == batch["y"]).sum()}


def _train_epochs(model, x_train, y_train, cfg: dict, crop: int, gen, log) -> list[dict]:
    """Train the judge through the models' loop (fersnet.training.loop); returns its history rows."""
    from fersnet.training.loop import Hooks, LoopSpec, SampleMeans, run
    jcfg = cfg["judge"]
    source = JudgeEpochs(x_train, y_train, jcfg["batch_size"], crop, gen)
    epochs = judge_epochs(jcfg, len(x_train))
    task = JudgeTask(model, jcfg, source.steps * epochs)
    state: dict = {"epoch": 0, "history": []}

    def report(epoch: int) -> None:
        row = state["history"][-1]
        log(f"judge epoch {epoch}: loss {row['loss']:.4f} train_acc {row['train_acc']:.3f}")

    spec = LoopSpec(source=source, epochs=epochs, lr_factor=lambda epoch: 1.0, meter=SampleMeans,
                    label="judge", hooks=Hooks(after_epoch=report),
                    nonfinite_hint="the judge is not written; lower `judge.lr`")
    return run(task, spec, state)["history"]


def recalibrate_batchnorm(model, x_train, crop: int, batch_size: int) -> None:
    """Replace BatchNorm running statistics by exact averages over the training centre crops.

    With a few dozen optimizer steps (the CPU demo) the default momentum 0.1 leaves the
    running statistics far from the trained weights' activations, and eval-mode accuracy
    collapses to chance; one no-grad pass with a cumulative average fixes that.
    """
    import torch
    from torch import nn
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None          # cumulative moving average over the whole pass
    h, w = x_train.shape[-2:]
    top, left = (h - crop) // 2, (w - crop) // 2
    model.train()
    with torch.no_grad():
        for i in range(0, len(x_train), batch_size):
            chunk = x_train[i:i + batch_size, :, top:top + crop, left:left + crop]
            if len(chunk) >= 2:
                model(chunk)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def train_judge(cfg: dict, db: str, fold: int, device: str | None = None, log=None, force: bool = False) -> dict:
    """Train the judge of one fold on its real training images; returns metrics.json's content.

    A finished judge made from the same inputs (fingerprint) is not retrained: the call returns
    its metrics; one made from other inputs is refused unless `force` (fersnet.provenance).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    out = paths.judge_dir(cfg, db, fold)
    made_by = ownership.step("judge", db, f"seed{int(cfg['seed'])}", f"fold{int(fold)}")
    ownership.check_data_roots(cfg, out, "fersnet judge")
    ownership.check_replaceable(out, made_by)
    ownership.clean_temps(out)             # leftovers of a killed judge of this fold
    fp = provenance.fingerprint(cfg, "judge", db, "judge", fold)
    done = provenance.reuse(out / paths.METRICS, fp, force, log)
    if done is not None:
        return done
    import torch
    from fersnet.data.dataset import load_processed
    from fersnet.training import checkpoint as ck
    from fersnet.training.classification import classification_metrics

    t_start = time.perf_counter()
    data = load_processed(cfg, db)
    n_folds = int(cfg["n_folds"])
    if not 0 <= int(fold) < n_folds:
        raise DataError(f"fold {fold} out of range 0..{n_folds - 1} (params `n_folds`)")
    train_rows, test_rows = data.split(fold)   # subject-disjoint (checked in folds.split)
    crop = int(cfg["train"]["crop"])
    if crop > data.images.shape[1]:
        raise DataError(f"{paths.processed_dir(cfg, db)}: images are {data.images.shape[1]} px, smaller "
                        f"than `train.crop` ({crop}); re-run `fersnet preprocess --db {db}`")
    device = str(resolve_device(cfg["train"]["device"], device))     # a torch device string
    torch.set_num_threads(int(cfg["train"]["threads"]))
    seed = stream("judge", cfg["seed"], fold)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    classes = list(data.classes)
    labels = data.meta["label"].to_numpy().astype(np.int64)
    model = build_judge(data.channels, len(classes), cfg["judge"]["width"]).to(device)
    x_train = to_tensor(data.images[train_rows], device)
    y_train = torch.from_numpy(labels[train_rows]).to(device)
    history = _train_epochs(model, x_train, y_train, cfg, crop, gen, log)
    recalibrate_batchnorm(model, x_train, crop, int(cfg["judge"]["batch_size"]))
    model.tta_flip = bool(cfg["judge"]["tta_flip"])

    logits = predict(model, centre_crop(data.images[test_rows], crop), device)
    scores = classification_metrics(labels[test_rows], logits.argmax(1), classes)
    arch = {"in_channels": data.channels, "n_classes": len(classes), "width": float(cfg["judge"]["width"]),
            "crop": crop, "tta_flip": model.tta_flip}
    metrics = {
        "db": db, "model": "judge", "fold": int(fold), "classes": classes, **scores,
        "n_test": int(len(test_rows)), "n_train": int(len(train_rows)),
        "epochs": len(history), "seconds": round(time.perf_counter() - t_start, 3),
        "device": device, **provenance.stamp(fp),
    }
    config_out = dict(cfg, job={"db": db, "model": "judge", "fold": int(fold), "device": device,
                                "started": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                      judge_arch=arch)
    with staged_outputs(out, paths.METRICS, made_by) as tmp:
        (tmp / paths.CONFIG).write_text(json.dumps(config_out, indent=2, sort_keys=True))
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        ck.save(tmp / paths.CHECKPOINT, {"model": state, "epoch": len(history), "arch": arch})
        ck.atomic_write_csv(tmp / paths.HISTORY, history)
        write_json(tmp / provenance.PROVENANCE, provenance.record(fp, cfg, device))
        write_json(tmp / paths.METRICS, metrics)
    return metrics


def load_judge(judge_dir: str | Path, device: str = "cpu"):
    """The trained judge of a folder, in eval mode: images float (B, C, h, w) in [0, 1] -> logits."""
    import torch
    judge_dir = Path(judge_dir)
    ckpt_path = judge_dir / paths.CHECKPOINT
    if not (judge_dir / paths.METRICS).is_file() or not ckpt_path.is_file():
        raise FersnetError(f"{judge_dir}: no finished judge (metrics.json/checkpoint.pt missing); "
                           "run `fersnet judge --db <db> --fold <k>` first")
    redo = "train the judge again (`fersnet judge ... --force`) or delete the folder"
    ckpt = read_checkpoint(ckpt_path, "judge", redo)
    try:
        arch = ckpt["arch"]
        model = build_judge(int(arch["in_channels"]), int(arch["n_classes"]), float(arch["width"]))
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as e:
        what = f"no {e}" if isinstance(e, KeyError) else (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise CheckpointError(f"{ckpt_path}: not a judge checkpoint of this version ({what}); {redo}") from None
    model.crop = int(arch["crop"])
    model.tta_flip = bool(arch.get("tta_flip", False))   # judges trained before the option: no flip
    return model.to(device).eval()


def main(cfg: dict, args) -> dict:
    """`fersnet judge --db <db> --fold <k>`."""
    m = train_judge(cfg, args.db, args.fold, device=getattr(args, "device", None),
                    force=getattr(args, "force", False))
    return {"db": m["db"], "fold": m["fold"], "accuracy": m["accuracy"], "n_test": m["n_test"],
            "seconds": m["seconds"], "dir": str(paths.judge_dir(cfg, args.db, args.fold))}
