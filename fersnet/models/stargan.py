"""StarGAN (Choi et al., CVPR 2018), the synthesis baseline, scaled by `model.width`.

Generator: the target label is tiled as extra input channels; 7x7 conv, two stride-2 downsamplings,
`stargan.res_blocks` residual blocks, two transposed-conv upsamplings, 7x7 conv + tanh.
Discriminator: stride-2 4x4 convs with LeakyReLU 0.01, an adversarial patch head and a
classification head. Losses: WGAN-GP, domain classification, cycle reconstruction (L1).
Images are [0, 1] outside and [-1, 1] inside; the gradient penalty (gradient of the critic with
respect to its [-1, 1] input) and the reconstruction L1 are taken on [-1, 1], the scale on which
the original's lambda_gp and lambda_rec were set (yunjey/stargan).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fersnet.models.blocks import InstanceNorm2d, count
from fersnet.models.tasks import Task, adam, set_requires_grad


def to_pm1(x01: torch.Tensor) -> torch.Tensor:
    """Images from [0, 1] (fersnet's scale) to [-1, 1] (StarGAN's)."""
    return x01 * 2 - 1


class ResidualBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False), InstanceNorm2d(c, affine=True), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1, bias=False), InstanceNorm2d(c, affine=True))

    def forward(self, x):
        return x + self.body(x)


class StarGenerator(nn.Module):
    def __init__(self, in_ch: int, n_classes: int, width: float, res_blocks: int):
        super().__init__()
        c = max(2, int(round(64 * width)))

        def norm_relu(ch):
            return [InstanceNorm2d(ch, affine=True), nn.ReLU(inplace=True)]

        layers = [nn.Conv2d(in_ch + n_classes, c, 7, padding=3, bias=False), *norm_relu(c)]
        for _ in range(2):
            layers += [nn.Conv2d(c, 2 * c, 4, stride=2, padding=1, bias=False), *norm_relu(2 * c)]
            c *= 2
        layers += [ResidualBlock(c) for _ in range(res_blocks)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1, bias=False), *norm_relu(c // 2)]
            c //= 2
        layers += [nn.Conv2d(c, in_ch, 7, padding=3, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x01, onehot):
        cond = onehot[..., None, None].expand(-1, -1, x01.shape[-2], x01.shape[-1])
        y = self.net(torch.cat([to_pm1(x01), cond], dim=1))
        return (y + 1) / 2

    def synthesize(self, x01, onehot):
        return self.forward(x01, onehot)


class StarDiscriminator(nn.Module):
    """PatchGAN critic + label classifier; depth chosen so the last map is at least 2x2."""

    def __init__(self, in_ch: int, n_classes: int, width: float, size: int):
        super().__init__()
        c = max(2, int(round(64 * width)))
        n_layers = max(1, int(math.log2(size)) - 1)     # 128 px -> 6 layers, as the original
        layers, cin, s = [], in_ch, size
        for _ in range(n_layers):
            layers += [nn.Conv2d(cin, c, 4, stride=2, padding=1), nn.LeakyReLU(0.01, inplace=True)]
            cin, c, s = c, 2 * c, s // 2
        self.main = nn.Sequential(*layers)
        self.src = nn.Conv2d(cin, 1, 3, padding=1, bias=False)
        self.cls = nn.Conv2d(cin, n_classes, s, bias=False)

    def forward(self, x01):
        return self.critic(to_pm1(x01))

    def critic(self, x):
        """(patch scores, class logits) of images `x` in [-1, 1]."""
        h = self.main(x)
        return self.src(h), self.cls(h).flatten(1)


class StarGANTask(Task):
    """StarGAN's solver as a Task: D every step, G every `stargan.n_critic` steps."""

    # not D: its gradient penalty differentiates twice, which compiled graphs do not support
    compile_targets = ("gen",)

    has_classifier = False

    def __init__(self, cfg: dict, n_classes: int, channels: int):
        super().__init__(n_classes)
        sg, width = cfg["stargan"], cfg["model"]["width"]
        self.gen = StarGenerator(channels, n_classes, width, sg["res_blocks"])
        self.disc = StarDiscriminator(channels, n_classes, width, cfg["train"]["crop"])
        self.lam = {"cls": sg["lambda_cls"], "rec": sg["lambda_rec"], "gp": sg["lambda_gp"]}
        self.n_critic = sg["n_critic"]
        self.optimizers = {"G": adam(self.gen.parameters(), sg["lr"], sg["betas"]),
                           "D": adam(self.disc.parameters(), sg["lr"], sg["betas"])}

    @torch.no_grad()
    def classify(self, x):
        return None

    def gate_means(self):
        return {}

    def gradient_penalty(self, real, fake):
        """WGAN-GP (Gulrajani et al. 2017) on random interpolates of real and fake ([0, 1] images):
        (||grad of the critic w.r.t. its [-1, 1] input||_2 - 1)^2, averaged over the batch."""
        alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device)
        mixed = (alpha * to_pm1(real) + (1 - alpha) * to_pm1(fake)).requires_grad_(True)
        src, _ = self.disc.critic(mixed)
        grad = torch.autograd.grad(src.sum(), mixed, create_graph=True)[0]
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    @staticmethod
    def reconstruction_loss(x, rec):
        """Mean absolute difference of [0, 1] images `x` and `rec`, taken on [-1, 1]."""
        return (to_pm1(x) - to_pm1(rec)).abs().mean()

    def train_step(self, batch: dict) -> dict:
        x, s, t = batch["x"], batch["s"], batch["t"]
        oh_s, oh_t = self.onehot(s), self.onehot(t)
        out = {}

        # 1. Train D: real/fake critic, classification of real faces, gradient penalty.
        # The fake is rendered once per step: with autograd on a G step (the G update below reuses
        # it; G's weights do not change in between), without on the others (only D reads it).
        g_step = (batch["step"] + 1) % self.n_critic == 0
        set_requires_grad(self.disc, True)
        with self.autocast(), torch.set_grad_enabled(g_step):
            fake_g = self.gen(x, oh_t)
        fake = fake_g.detach()
        with self.autocast():
            # with fast ops, real and fake through D as one batch: D works per sample
            # (convolutions, LeakyReLU), so the outputs are those of two calls, at half the
            # operator calls, rounded otherwise in float32
            if self.batched_disc:
                src, cls = self.disc(torch.cat([x, fake]))
                (src_real, src_fake), cls_real = src.split(len(x)), cls[:len(x)]
            else:
                (src_real, cls_real), (src_fake, _) = self.disc(x), self.disc(fake)
        loss_real = -src_real.float().mean()
        loss_fake = src_fake.float().mean()
        loss_cls = F.cross_entropy(cls_real.float(), s)
        loss_gp = self.gradient_penalty(x, fake.float())
        loss_d = loss_real + loss_fake + self.lam["cls"] * loss_cls + self.lam["gp"] * loss_gp
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["D"].step()
        out.update({"D/loss_real": loss_real.detach(), "D/loss_fake": loss_fake.detach(),
                    "D/loss_cls": loss_cls.detach(), "D/loss_gp": loss_gp.detach(), "D/loss": loss_d.detach()})

        # 2. Train G every n_critic steps: fool the critic, hit the target class, reconstruct.
        if g_step:
            set_requires_grad(self.disc, False)
            fake = fake_g
            with self.autocast():
                src, cls = self.disc(fake)
                rec = self.gen(fake, oh_s)
            loss_g_fake = -src.float().mean()
            loss_g_cls = F.cross_entropy(cls.float(), t)
            loss_rec = self.reconstruction_loss(x, rec.float())
            loss_g = loss_g_fake + self.lam["cls"] * loss_g_cls + self.lam["rec"] * loss_rec
            self.optimizers["G"].zero_grad(set_to_none=True)
            loss_g.backward()
            self.optimizers["G"].step()
            out.update({"G/loss_fake": loss_g_fake.detach(), "G/loss_cls": loss_g_cls.detach(),
                        "G/loss_rec": loss_rec.detach(), "G/loss": loss_g.detach()})
        return out

    def parts(self) -> dict[str, int]:
        return {"gen": count(self.gen), "disc": count(self.disc)}
