"""A temporary distribution of an external model, as pip would install it: a package folder and a
`<name>-<version>.dist-info` with METADATA and entry_points.txt, in a folder put on sys.path (and
PYTHONPATH for subprocesses). Nothing is installed into the environment."""
from __future__ import annotations

from pathlib import Path

SPEC = '''from fersnet.catalog import ModelSpec

FER = ModelSpec("tinycnn", "Tiny CNN", "{pkg}.model:TinyCNNTask", classifies=True, synthesizes=False)
GEN = ModelSpec("tinygen", "Tiny generator", "{pkg}.model:TinyGenTask", classifies=False, synthesizes=True)
'''

MODEL = '''import torch
import torch.nn.functional as F
from torch import nn

from fersnet.models.tasks import Task, adam


class TinyCNNTask(Task):
    """A plain CNN FER baseline: one convolution, global pooling, a linear layer."""

    compile_targets = ("net",)

    def __init__(self, key, cfg, n_classes, channels):
        super().__init__(n_classes)
        self.net = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(8, {out}))
        tr = cfg["train"]
        self.optimizers = {{"C": adam(self.net.parameters(), tr["lr"], tr["betas"], tr["weight_decay"])}}

    def train_step(self, batch):
        logits = self.net(batch["x"])
        loss = F.cross_entropy(logits, batch["s"])
        self.optimizers["C"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["C"].step()
        return {{"C/loss_ce": loss.detach(), "train_acc": (logits.argmax(1) == batch["s"]).float().mean()}}

    @torch.no_grad()
    def classify(self, x):
        return self.net(x)


class TinyGenTask(Task):
    """A generator without a classifier: a residual convolution conditioned on the target."""

    has_classifier = False
    compile_targets = ("gen",)

    def __init__(self, key, cfg, n_classes, channels):
        super().__init__(n_classes)
        self.gen = nn.Conv2d(channels + n_classes, channels, 3, padding=1)
        tr = cfg["train"]
        self.optimizers = {{"G": adam(self.gen.parameters(), tr["lr"], tr["betas"], tr["weight_decay"])}}

    def _render(self, x, t):
        cond = self.onehot(t)[:, :, None, None].expand(-1, -1, *x.shape[2:])
        return (x + 0.1 * torch.tanh(self.gen(torch.cat([x, cond], 1)))).clamp(0, 1)

    def train_step(self, batch):
        fake = self._render(batch["x"], batch["t"])
        loss = F.l1_loss(fake[batch["has_t"]], batch["xt"][batch["has_t"]]) if batch["has_t"].any() else fake.mean() * 0
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["G"].step()
        return {{"G/loss_l1": loss.detach()}}

    @torch.no_grad()
    def synthesize(self, x, target):
        return self._render(x, target){crop}
'''


def write_distribution(folder: Path, pkg: str = "mypkg", version: str = "0.1", entry_points: dict | None = None,
                       out: str = "n_classes", crop: str = "") -> Path:
    """`folder`/<pkg>/ (spec.py, model.py) and `folder`/<pkg>-<version>.dist-info/; entry_points maps
    an entry-point name to `module:attr` (default: the FER-only model). Returns `folder`."""
    (folder / pkg).mkdir(parents=True, exist_ok=True)
    (folder / pkg / "__init__.py").write_text("")
    (folder / pkg / "spec.py").write_text(SPEC.format(pkg=pkg))
    (folder / pkg / "model.py").write_text(MODEL.format(out=out, crop=crop))
    info = folder / f"{pkg}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {pkg}\nVersion: {version}\n")
    eps = entry_points if entry_points is not None else {"tinycnn": f"{pkg}.spec:FER"}
    (info / "entry_points.txt").write_text("[fersnet.models]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    (info / "top_level.txt").write_text(pkg + "\n")
    return folder
