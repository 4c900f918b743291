"""The task: three convolution blocks, global pooling and a linear classifier, trained with
cross-entropy on the source faces of each batch (the optimizer settings are the `train` section's)."""
import torch
import torch.nn.functional as F
from torch import nn

from fersnet.models.tasks import Task, adam


def block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))


class TinyCNNTask(Task):
    compile_targets = ("net",)            # networks torch.compile may compile (train.compile)

    def __init__(self, key: str, cfg: dict, n_classes: int, channels: int):
        super().__init__(n_classes)
        w, tr = cfg["tinycnn"]["width"], cfg["train"]
        self.net = nn.Sequential(block(channels, w), block(w, 2 * w), block(2 * w, 4 * w),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Dropout(cfg["tinycnn"]["dropout"]), nn.Linear(4 * w, n_classes))
        self.optimizers = {"C": adam(self.net.parameters(), tr["lr"], tr["betas"], tr["weight_decay"])}

    def train_step(self, batch: dict) -> dict:
        with self.autocast():
            logits = self.net(batch["x"])
            loss = F.cross_entropy(logits.float(), batch["s"])
        opt = self.optimizers["C"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"C/loss_ce": loss.detach(), "train_acc": (logits.argmax(1) == batch["s"]).float().mean()}

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
