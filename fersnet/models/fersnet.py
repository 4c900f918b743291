"""FERSNet and its ablations as generator-side networks (docs/models.md).

Every network maps an image x in [0, 1] and a target one-hot to (FER logits of x, synthesized
image in [0, 1]):

- `FERSNet`         two VGG branches exchanging features through ConvFLU pairs after levels 1-3
- `SharedTrunkNet`  "w/o ConvFLU": hard parameter sharing, one trunk for levels 1-3
- `SingleTaskNets`  "w/o MTL": a FER network and a FES network that share and exchange nothing

These are `model.arch: paper` (the paper's figure, VGG levels); `model.arch: r2021` builds the
authors' released network and its ablations (fersnet/models/r2021.py) behind the same interface.
"""
from __future__ import annotations

import torch
from torch import nn

from fersnet.models.blocks import Classifier, Decoder, Level, PatchDiscriminator, count, vgg_levels, widths
from fersnet.models.convflu import ConvFLUPair


class _GeneratorNet(nn.Module):
    """Shared interface: encode -> (fer4, fes4, skips); head and decoder on top."""

    head: nn.Module
    decoder: nn.Module
    flus: nn.ModuleList      # ConvFLU pairs, where the network has them

    def encode(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x, onehot):
        """(logits of x, x rendered with the target expression)."""
        fer4, fes4, skips = self.encode(x)
        return self.head(fer4), self.decoder(fes4, skips, onehot, x)

    def classify(self, x):
        """FER logits (the target does not enter the encoder, so no target is needed)."""
        fer4, _, _ = self.encode(x)
        return self.head(fer4)

    def synthesize(self, x, onehot):
        return self.forward(x, onehot)[1]

    def gate_means(self) -> dict[str, torch.Tensor]:
        """Mean ConvFLU gate values of the last forward pass (empty without ConvFLUs)."""
        out = {}
        for level, pair in enumerate(getattr(self, "flus", None) or (), start=1):
            for key, value in pair.last_gates.items():
                out[f"{key}_l{level}"] = value
        return out

    def fer_parameters(self):
        """Parameters that FES-DA fine-tunes: everything that computes the FER logits on the FER side."""
        raise NotImplementedError

    def parts(self) -> dict[str, int]:
        """Parameter counts by part (docs/models.md table)."""
        raise NotImplementedError


class FERSNet(_GeneratorNet):
    """Two branches (FER with BatchNorm, FES with InstanceNorm), a ConvFLU pair after levels 1-3."""

    def __init__(self, in_ch: int, n_classes: int, width: float, kernel: int = 1, condition: str = "concat",
                 output: str = "direct"):
        super().__init__()
        ch = widths(width)
        self.fer = vgg_levels(in_ch, ch, "batch")
        self.fes = vgg_levels(in_ch, ch, "instance")
        # separate weights at each level (paper.md 1.2: superscript i-1), unlike R2020's reuse
        self.flus = nn.ModuleList([ConvFLUPair(c, kernel) for c in ch[:3]])
        self.head = Classifier(ch[3], n_classes)
        self.decoder = Decoder(ch, in_ch, n_classes, condition, output)

    def encode(self, x):
        f_fer, f_fes, skips = x, x, []
        for level in range(4):
            f_fer, f_fes = self.fer[level](f_fer), self.fes[level](f_fes)
            if level < 3:
                f_fer, f_fes = self.flus[level](f_fer, f_fes)
                skips.append(f_fes)          # FES-side ConvFLU outputs feed the decoder
        return f_fer, f_fes, skips

    def fer_parameters(self):
        params = list(self.fer.parameters()) + list(self.head.parameters())
        for pair in self.flus:
            params += list(pair.to_fer.parameters())
        return params

    def parts(self):
        return {"fer": count(self.fer) + count(self.head),
                "fes": count(self.fes) + count(self.decoder),
                "convflu": count(self.flus), "shared": 0}


class SharedTrunkNet(_GeneratorNet):
    """Hard parameter sharing ("Baseline*", paper.md 4): one trunk for levels 1-3, no ConvFLU.

    Level 4 stays task-specific, as in FERSNet. Shared weights instead of two branches plus
    ConvFLUs brings two more differences with it: one set of levels 1-3 instead of two (fewer
    parameters), normalised by BatchNorm, so the FES side and the decoder's skips lose FERSNet's
    InstanceNorm there (docs/models.md, "Ablations").
    """

    def __init__(self, in_ch: int, n_classes: int, width: float, condition: str = "concat",
                 output: str = "direct"):
        super().__init__()
        ch = widths(width)
        self.trunk = vgg_levels(in_ch, ch, "batch", 0, 3)
        self.fer_top = Level(ch[2], ch[3], "batch", pool=True)
        self.fes_top = Level(ch[2], ch[3], "instance", pool=True)
        self.head = Classifier(ch[3], n_classes)
        self.decoder = Decoder(ch, in_ch, n_classes, condition, output)

    def encode(self, x):
        skips = []
        for level in self.trunk:
            x = level(x)
            skips.append(x)
        return self.fer_top(x), self.fes_top(x), skips

    def fer_parameters(self):
        return list(self.trunk.parameters()) + list(self.fer_top.parameters()) + list(self.head.parameters())

    def parts(self):
        return {"fer": count(self.fer_top) + count(self.head),
                "fes": count(self.fes_top) + count(self.decoder),
                "convflu": 0, "shared": count(self.trunk)}


class FERNet(nn.Module):
    """The FER branch alone ("w/o MTL" recognition row)."""

    def __init__(self, in_ch: int, n_classes: int, width: float):
        super().__init__()
        ch = widths(width)
        self.levels = vgg_levels(in_ch, ch, "batch")
        self.head = Classifier(ch[3], n_classes)

    def forward(self, x):
        for level in self.levels:
            x = level(x)
        return self.head(x)


class FESNet(nn.Module):
    """The FES network alone: encoder, condition and U-Net decoder (single-task generator)."""

    def __init__(self, in_ch: int, n_classes: int, width: float, condition: str = "concat",
                 output: str = "direct"):
        super().__init__()
        ch = widths(width)
        self.levels = vgg_levels(in_ch, ch, "instance")
        self.decoder = Decoder(ch, in_ch, n_classes, condition, output)

    def forward(self, x, onehot):
        skips, h = [], x
        for level in self.levels:
            h = level(h)
            skips.append(h)
        return self.decoder(h, skips[:3], onehot, x)


class SingleTaskNets(_GeneratorNet):
    """"w/o MTL": a FER network (image -> logits) and a FES network ((image, target) -> image)
    trained in one job; no parameters and no features in common."""

    def __init__(self, fer_net: nn.Module, fes_net: nn.Module):
        super().__init__()
        self.fer_net = fer_net
        self.fes_net = fes_net

    def forward(self, x, onehot):
        return self.fer_net(x), self.fes_net(x, onehot)

    def classify(self, x):
        return self.fer_net(x)

    def synthesize(self, x, onehot):
        return self.fes_net(x, onehot)

    def fer_parameters(self):
        return list(self.fer_net.parameters())

    def parts(self):
        return {"fer": count(self.fer_net), "fes": count(self.fes_net), "convflu": 0, "shared": 0}


def build_generator(model_key: str, cfg: dict, n_classes: int, channels: int) -> _GeneratorNet:
    """The generator-side network of a FERSNet-family model key, in the architecture `model.arch`."""
    m = cfg["model"]
    if m["arch"] == "r2021":
        from fersnet.models.r2021 import build_r2021_generator     # r2021 builds on this module
        return build_r2021_generator(model_key, cfg, n_classes, channels)
    if model_key in ("fersnet", "fes_da", "fes_da_real"):
        return FERSNet(channels, n_classes, m["width"], m["convflu_kernel"], m["condition"], m["output"])
    if model_key == "no_convflu":
        return SharedTrunkNet(channels, n_classes, m["width"], m["condition"], m["output"])
    if model_key == "no_mtl":
        return SingleTaskNets(FERNet(channels, n_classes, m["width"]),
                              FESNet(channels, n_classes, m["width"], m["condition"], m["output"]))
    raise KeyError(model_key)


def build_discriminator(cfg: dict, n_classes: int, channels: int) -> nn.Module:
    """The conditional PatchGAN of `model.arch` (docs/models.md: receptive fields)."""
    if cfg["model"]["arch"] == "r2021":
        from fersnet.models.r2021 import R2021Discriminator
        return R2021Discriminator(channels, n_classes, widths(cfg["model"]["width"]))
    return PatchDiscriminator(channels, n_classes, widths(cfg["model"]["width"]))
