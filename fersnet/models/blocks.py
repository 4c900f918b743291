"""Building blocks shared by the FERSNet variants: VGG levels, the conditional decoder, PatchGAN.

Widths follow VGG (64-128-256-512, paper.md 1.4) times `model.width`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BASE_WIDTHS = (64, 128, 256, 512)


def widths(width: float) -> list[int]:
    """Channel counts of the four levels at a width multiplier (at least 2 channels each)."""
    return [max(2, int(round(c * width))) for c in BASE_WIDTHS]


class InstanceNorm2d(nn.InstanceNorm2d):
    """nn.InstanceNorm2d computed as a GroupNorm with one channel per group: the same function
    (mean and variance per sample and channel over the image, the same eps, the same per-channel
    affine), the same parameters and state_dict keys, and on the CPU a 2-3x cheaper forward +
    backward than instance_norm's reshape into a batch norm (docs/lab-notebook.md, "Levers on the demo step").
    Falls back to nn.InstanceNorm2d's own path with running statistics or an unbatched input, and
    where `via_group_norm` is False (`train.fast_ops`: the reference float32 path, see
    `set_fast_ops`)."""

    via_group_norm = True

    def forward(self, x):
        if self.track_running_stats or x.dim() != 4 or not self.via_group_norm:
            return super().forward(x)
        return F.group_norm(x, x.shape[1], self.weight, self.bias, self.eps).to(x.dtype)


def set_fast_ops(module: nn.Module, on: bool) -> None:
    """InstanceNorm through group_norm (on) or nn.InstanceNorm2d's own kernel (off) in every
    InstanceNorm2d of `module`: the same function, another float32 rounding path."""
    for m in module.modules():
        if isinstance(m, InstanceNorm2d):
            m.via_group_norm = bool(on)


def norm_layer(kind: str, channels: int) -> nn.Module:
    """BatchNorm for the recognition side, InstanceNorm for the synthesis side (as R2021)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return InstanceNorm2d(channels, affine=True)
    raise ValueError(kind)


def conv_block(cin: int, cout: int, norm: str, n_convs: int = 2) -> nn.Sequential:
    """VGG block: n x (3x3 conv, norm, ReLU)."""
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False),
                   norm_layer(norm, cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Level(nn.Module):
    """One encoder level: max-pool (except level 1), then a VGG block (paper.md 1.1 figure)."""

    def __init__(self, cin: int, cout: int, norm: str, pool: bool):
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.block = conv_block(cin, cout, norm)

    def forward(self, x):
        return self.block(self.pool(x))


def vgg_levels(in_ch: int, chans: list[int], norm: str, first: int = 0, last: int = 4) -> nn.ModuleList:
    """Encoder levels `first`..`last`-1 (0-based) of the 4-level VGG trunk."""
    levels = []
    for i in range(first, last):
        cin = in_ch if i == 0 else chans[i - 1]
        levels.append(Level(cin, chans[i], norm, pool=i > 0))
    return nn.ModuleList(levels)


class Classifier(nn.Module):
    """FER head f_cls: global average pool of level-4 features, then a linear layer."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, f4):
        return self.fc(f4.mean(dim=(2, 3)))


class AdaINCondition(nn.Module):
    """R2021's modulation: instance-normalise, then scale/shift predicted from the target one-hot."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.norm = InstanceNorm2d(channels, affine=False)
        self.affine = nn.Linear(n_classes, 2 * channels)
        # start close to identity (R2021 scales its Xavier init by 0.1 for the same reason)
        nn.init.normal_(self.affine.weight, std=0.01)
        nn.init.zeros_(self.affine.bias)

    def forward(self, f, onehot):
        gamma, beta = self.affine(onehot).chunk(2, dim=1)
        return self.norm(f) * (1 + gamma[..., None, None]) + beta[..., None, None]


class Transformer(nn.Module):
    """f_tra of the paper's figure: target one-hot -> feature maps concatenated at the bottleneck."""

    def __init__(self, n_classes: int, channels: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_classes, channels), nn.ReLU(inplace=True),
                                 nn.Linear(channels, channels), nn.ReLU(inplace=True))

    def forward(self, onehot, size):
        return self.mlp(onehot)[..., None, None].expand(-1, -1, size[0], size[1])


class ConditionalInstanceNorm(nn.Module):
    """InstanceNorm whose scale and shift are chosen by the target expression (one row each).

    Starts as a plain InstanceNorm (scale 1, shift 0). The shift acts after the normalisation,
    so, unlike a tiled condition concatenated before a normalised conv, nothing removes it.
    """

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.norm = InstanceNorm2d(channels, affine=False)
        self.gamma = nn.Linear(n_classes, channels, bias=False)
        self.beta = nn.Linear(n_classes, channels, bias=False)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x, onehot):
        onehot = onehot.to(x.dtype)
        return self.norm(x) * self.gamma(onehot)[..., None, None] + self.beta(onehot)[..., None, None]


class CondConvBlock(nn.Module):
    """conv_block with conditional InstanceNorm: n x (3x3 conv, CIN(target), ReLU)."""

    def __init__(self, cin: int, cout: int, n_classes: int, n_convs: int = 2):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False)
                                    for i in range(n_convs)])
        self.norms = nn.ModuleList([ConditionalInstanceNorm(cout, n_classes) for _ in range(n_convs)])

    def forward(self, x, onehot):
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x), onehot))
        return x


class UpBlock(nn.Module):
    """Decoder step: nearest upsampling x2 (no checkerboard artefacts), concat the skip, VGG block.

    With `n_classes` > 0 the block's norms are conditional on the target (condition "cin").
    """

    def __init__(self, cin: int, skip: int, cout: int, n_classes: int = 0):
        super().__init__()
        self.conditional = n_classes > 0
        self.block = (CondConvBlock(cin + skip, cout, n_classes) if self.conditional
                      else conv_block(cin + skip, cout, "instance"))

    def forward(self, x, skip, onehot=None):
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        x = torch.cat([x, skip], dim=1)
        return self.block(x, onehot) if self.conditional else self.block(x)


class Decoder(nn.Module):
    """f_dec: bottleneck (FES level 4 + condition) -> image in [0, 1], U-Net skips from levels 3, 2, 1.

    `condition`: "concat" (the paper's figure: f_tra output channel-concatenated with the FES
    features), "cin" (concat as the figure, and every decoder block's InstanceNorm conditional on
    the target: a per-expression scale and shift after the normalisation; docs/models.md) or
    "adain" (R2021: the target modulates the bottleneck and every skip).
    """

    def __init__(self, chans: list[int], out_ch: int, n_classes: int, condition: str = "concat",
                 output: str = "direct"):
        super().__init__()
        self.condition, self.residual = condition, output == "residual"
        if condition in ("concat", "cin"):
            self.transformer = Transformer(n_classes, chans[0])
            bott_in = chans[3] + chans[0]
        else:
            self.mods = nn.ModuleList([AdaINCondition(c, n_classes) for c in chans])
            bott_in = chans[3]
        if condition in ("concat", "cin"):
            # No normalisation right after the concatenation: the condition maps are constant over
            # space, and an InstanceNorm there would subtract them again (per-channel spatial mean),
            # leaving the target with no effect but through the zero-padded border (docs/models.md).
            self.bottleneck = nn.Sequential(nn.Conv2d(bott_in, chans[3], 3, padding=1), nn.ReLU(inplace=True))
        else:
            self.bottleneck = conv_block(bott_in, chans[3], "instance", n_convs=1)
        k = n_classes if condition == "cin" else 0
        self.ups = nn.ModuleList([UpBlock(chans[3], chans[2], chans[2], k),
                                  UpBlock(chans[2], chans[1], chans[1], k),
                                  UpBlock(chans[1], chans[0], chans[0], k)])
        self.to_image = nn.Conv2d(chans[0], out_ch, 1)
        if self.residual:
            # start as the identity map: the decoder only learns the change of expression
            nn.init.zeros_(self.to_image.weight)
            nn.init.zeros_(self.to_image.bias)

    def forward(self, f4, skips, onehot, x=None):
        """f4: FES level-4 features; skips: FES features of levels 1, 2, 3; onehot: (B, E) target.

        With `model.output: residual` the decoder's output is added to the input image x in
        logit space, so the result stays in (0, 1) and gradients never vanish at a clamp.
        """
        skips = list(skips)
        if self.condition in ("concat", "cin"):
            h = torch.cat([f4, self.transformer(onehot, f4.shape[-2:])], dim=1)
        else:
            h = self.mods[3](f4, onehot)
            skips = [m(s, onehot) for m, s in zip(self.mods, skips)]
        h = self.bottleneck(h)
        for up, skip in zip(self.ups, reversed(skips)):
            h = up(h, skip, onehot)
        return to_unit_range(self.to_image(h), x, self.residual)


def to_unit_range(out, x=None, residual: bool = False):
    """The decoder's last map -> image in [0, 1]: a sigmoid (`model.output: direct`), or with
    `residual` a sigmoid of the map added to the input image x in logit space."""
    if residual:
        out = out + torch.logit(x.float().clamp(1e-3, 1 - 1e-3)).to(out.dtype)
    return torch.sigmoid(out)


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN of `model.arch: paper`: the target one-hot is tiled and concatenated to the image.

    Three 4x4 stride-2 convs (64-128-256 x width), a 3x3 stride-1 conv (512 x width) and a 3x3
    conv to a score map; InstanceNorm on all but the first, LeakyReLU 0.2. Each score sees a
    54x54 px window (`receptive_field`); 96 px gives a 12x12 map. Not pix2pix's 70x70 PatchGAN
    (its stride-1 convs are 4x4) and not R2021's (`r2021.R2021Discriminator`, 94x94 px, 6x6 map).
    """

    def __init__(self, in_ch: int, n_classes: int, chans: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_ch + n_classes
        for i, c in enumerate(chans[:3]):
            layers.append(nn.Conv2d(cin, c, 4, stride=2, padding=1))
            if i > 0:
                layers.append(InstanceNorm2d(c, affine=True))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = c
        layers += [nn.Conv2d(cin, chans[3], 3, padding=1), InstanceNorm2d(chans[3], affine=True),
                   nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(chans[3], 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, img, onehot):
        cond = onehot[..., None, None].expand(-1, -1, img.shape[-2], img.shape[-1])
        return self.net(torch.cat([img, cond], dim=1))


def receptive_field(module: nn.Module) -> int:
    """Side in pixels of the input window one output value of a plain conv stack sees.

    Walks the convolutions in order (padding moves a window, it does not widen it). The
    InstanceNorm statistics, taken over the whole map, are not counted.
    """
    size, jump = 1, 1
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            size += (m.kernel_size[0] - 1) * m.dilation[0] * jump
            jump *= m.stride[0]
    return size


def count(module: nn.Module | None) -> int:
    """Number of parameters of a module (0 for None)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())
