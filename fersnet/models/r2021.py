"""`model.arch: r2021`: the authors' released FERSNet (R2021: cikrhazo/FERSNet), at any width.

Channels below are at `model.width` 1.0 (c0..c3 = 64, 128, 256, 512 x width), sizes at 96 px:

    stem        3x3 conv + BatchNorm + ReLU + max-pool, shared by both tasks         64 x 48^2
    levels 1-3  per branch a ResNet BasicBlock (128, 256, 512), then max-pool    24^2, 12^2, 6^2
                FER: BatchNorm; FES: InstanceNorm without affine parameters;
                a bias-free ConvFLU pair after each level (separate weights per level)
    level 4     one BasicBlock on the two branches concatenated (1024), max-pool     1024 x 3^2
                shared; channels [:512] go to the classifier, [512:] to the decoder
    classifier  3x3 conv + BatchNorm + ReLU, global average pool, linear
    decoder     AdaIN(target) on the bottleneck, then 4 up steps (4x4 stride-2 transposed conv
                + InstanceNorm + ReLU, concatenated with an AdaIN(target)-modulated skip: the FES
                ConvFLU outputs of levels 3, 2, 1, then the stem), each followed by two
                3x3 conv + InstanceNorm + LeakyReLU(0.2); a last transposed conv to full size,
                two more such convs, and a 3x3 conv to the image

At 3 channels and 6 classes this is 53,983,438 parameters, the discriminator 2,770,881: the
counts of the authors' code at commit a5d9d2e (tests/test_models.py asserts both).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fersnet.errors import FersnetError
from fersnet.models.blocks import count, to_unit_range, widths
from fersnet.models.convflu import ConvFLUPair
from fersnet.models.fersnet import SingleTaskNets, _GeneratorNet

# five halvings (stem, levels 1-3, level 4) that the transposed convs double back exactly
DOWNSAMPLING = 32


def check_crop(crop: int) -> None:
    """r2021 needs a crop that halves exactly five times and leaves more than one bottleneck pixel."""
    if crop % DOWNSAMPLING or crop < 2 * DOWNSAMPLING:
        raise FersnetError(
            f"params: `model.arch` r2021 needs `train.crop` to be a multiple of {DOWNSAMPLING} and at "
            f"least {2 * DOWNSAMPLING} (the authors' 96 gives a 3x3 bottleneck), got {crop}: its encoder "
            f"halves the face five times, AdaIN normalises the bottleneck over its pixels, and the "
            f"decoder doubles it back exactly; e.g. --set train.crop=64 --set preprocess.size=72")


def norm(kind: str, channels: int) -> nn.Module:
    """R2021's norms: BatchNorm (FER side and the shared blocks), InstanceNorm without affine (FES)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    raise ValueError(kind)


class ResBlock(nn.Module):
    """ResNet BasicBlock (He et al. 2016): two 3x3 convs with a norm each, added to a shortcut.

    The shortcut is a bias-free 1x1 projection, without a norm (as R2021), where the channel
    count changes; the identity otherwise.
    """

    def __init__(self, cin: int, cout: int, kind: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm1 = norm(kind, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = norm(kind, cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x):
        h = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(h)) + self.shortcut(x))


def res_level(cin: int, cout: int, kind: str) -> nn.Sequential:
    """One encoder level: a BasicBlock at the incoming resolution, then a 2x2 max-pool."""
    return nn.Sequential(ResBlock(cin, cout, kind), nn.MaxPool2d(2))


def stem(in_ch: int, channels: int) -> nn.Sequential:
    """The shared first layer: 3x3 conv + BatchNorm + ReLU, then a 2x2 max-pool."""
    return nn.Sequential(nn.Conv2d(in_ch, channels, 3, padding=1), nn.BatchNorm2d(channels),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class NoisyAdaIN(nn.Module):
    """R2021's conditioning of a feature map on the target expression.

    Per-pixel Gaussian noise times a learned scalar (StyleGAN's noise input; the scalar starts at
    0), InstanceNorm, then scale gamma and shift beta with (gamma, beta) = Linear(target one-hot).
    The scale multiplies directly (not 1 + gamma) and the linear layer starts small (Xavier x 0.1),
    as R2021, so every modulated map starts close to zero and the target has to open it. The noise
    is drawn in evaluation too, as R2021 does: synthesis follows the global torch seed.
    """

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.noise_weight = nn.Parameter(torch.zeros(1))
        self.style = nn.Linear(n_classes, 2 * channels)
        nn.init.xavier_normal_(self.style.weight)
        with torch.no_grad():
            self.style.weight.mul_(0.1)
        nn.init.zeros_(self.style.bias)

    def forward(self, f, onehot):
        b, _, h, w = f.shape
        f = f + self.noise_weight.to(f.dtype) * torch.randn(b, 1, h, w, device=f.device, dtype=f.dtype)
        gamma, beta = self.style(onehot.to(f.dtype)).chunk(2, dim=1)
        return F.instance_norm(f) * gamma[..., None, None] + beta[..., None, None]


def conv_in_lrelu(cin: int, cout: int) -> nn.Sequential:
    """Decoder conv: 3x3 conv (with bias) + InstanceNorm + LeakyReLU 0.2."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2))


def up2x(cin: int, cout: int, act: nn.Module) -> nn.Sequential:
    """4x4 stride-2 transposed conv (no bias) + InstanceNorm + activation: exactly doubles the size."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
                         nn.InstanceNorm2d(cout), act)


class UpStep(nn.Module):
    """Up to the skip's size, concatenate the target-modulated skip, two decoder convs."""

    def __init__(self, cin: int, skip: int, mid: int, cout: int, n_classes: int):
        super().__init__()
        self.up = up2x(cin, skip, nn.ReLU(inplace=True))
        self.skip_condition = NoisyAdaIN(skip, n_classes)
        self.convs = nn.Sequential(conv_in_lrelu(2 * skip, mid), conv_in_lrelu(mid, cout))

    def forward(self, h, skip, onehot):
        return self.convs(torch.cat([self.up(h), self.skip_condition(skip, onehot)], dim=1))


def decoder_plan(c: list[int]) -> list[tuple[int, int, int, int]]:
    """(input, skip, middle, output) channels of the up steps, deepest first: R2021's plan
    (1024->512->512, 512->512->256, 256->256->128, 128->128->128 after each concatenation)."""
    return [(c[3], c[3], c[3], c[3]),
            (c[3], c[2], 2 * c[2], c[2]),
            (c[2], c[1], 2 * c[1], c[1]),
            (c[1], c[0], 2 * c[0], 2 * c[0])]


class R2021Decoder(nn.Module):
    """U-Net decoder with the target as AdaIN on the bottleneck and on every skip.

    R2021's last layer is linear; here the image goes through the same mapping to [0, 1] as the
    `paper` decoder (`model.output`: direct = sigmoid, residual = added to the input in logit
    space), since every consumer of a generator expects images in [0, 1].
    """

    def __init__(self, chans: list[int], out_ch: int, n_classes: int, output: str = "direct"):
        super().__init__()
        self.residual = output == "residual"
        self.condition = NoisyAdaIN(chans[3], n_classes)
        self.ups = nn.ModuleList([UpStep(*plan, n_classes) for plan in decoder_plan(chans)])
        self.to_full = nn.Sequential(up2x(2 * chans[0], chans[0], nn.LeakyReLU(0.2)),
                                     conv_in_lrelu(chans[0], chans[0]), conv_in_lrelu(chans[0], chans[0]))
        self.to_image = nn.Conv2d(chans[0], out_ch, 3, padding=1)
        if self.residual:
            nn.init.zeros_(self.to_image.weight)
            nn.init.zeros_(self.to_image.bias)

    def forward(self, f4, skips, onehot, x=None):
        """f4: FES bottleneck; skips: stem output and FES features of levels 1, 2, 3; onehot: target."""
        h = self.condition(f4, onehot)
        for up, skip in zip(self.ups, reversed(list(skips))):
            h = up(h, skip, onehot)
        return to_unit_range(self.to_image(self.to_full(h)), x, self.residual)


class R2021Classifier(nn.Module):
    """f_cls: 3x3 conv + BatchNorm + ReLU, global average pool, linear."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True))
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, f4):
        return self.fc(self.conv(f4).mean(dim=(2, 3)))


class R2021Net(_GeneratorNet):
    """`fersnet` at r2021: shared stem, two BasicBlock branches exchanging features through
    bias-free ConvFLU pairs after levels 1-3, a shared level-4 block split into FER and FES halves."""

    def __init__(self, in_ch: int, n_classes: int, width: float, kernel: int = 1, output: str = "direct"):
        super().__init__()
        c = widths(width)
        self.stem = stem(in_ch, c[0])
        self.fer = nn.ModuleList([res_level(c[i], c[i + 1], "batch") for i in range(3)])
        self.fes = nn.ModuleList([res_level(c[i], c[i + 1], "instance") for i in range(3)])
        # R2021's LeakyUnit has no bias anywhere, as the paper's equations
        self.flus = nn.ModuleList([ConvFLUPair(ch, kernel, gate_bias=False) for ch in c[1:]])
        self.joint = res_level(2 * c[3], 2 * c[3], "batch")
        self.head = R2021Classifier(c[3], n_classes)
        self.decoder = R2021Decoder(c, in_ch, n_classes, output)

    def encode(self, x):
        f = self.stem(x)
        f_fer, f_fes, skips = f, f, [f]
        for fer, fes, flus in zip(self.fer, self.fes, self.flus):
            f_fer, f_fes = flus(fer(f_fer), fes(f_fes))
            skips.append(f_fes)          # FES-side ConvFLU outputs feed the decoder
        fer4, fes4 = self.joint(torch.cat([f_fer, f_fes], dim=1)).chunk(2, dim=1)
        return fer4, fes4, skips

    def fer_parameters(self):
        params = [*self.stem.parameters(), *self.fer.parameters(), *self.joint.parameters(),
                  *self.head.parameters()]
        for pair in self.flus:
            params += list(pair.to_fer.parameters())
        return params

    def parts(self):
        return {"fer": count(self.fer) + count(self.head), "fes": count(self.fes) + count(self.decoder),
                "convflu": count(self.flus), "shared": count(self.stem) + count(self.joint)}


class R2021SharedTrunkNet(_GeneratorNet):
    """`no_convflu` at r2021: one BatchNorm trunk instead of two branches plus ConvFLUs.

    R2021 already shares the stem and level 4; here levels 1-3 are shared too, so the tasks part
    only at the heads. Level 4 takes the one trunk's 512 channels (a 1x1 projection shortcut) and
    still gives 1024, split into the FER and FES halves as in R2021.
    """

    def __init__(self, in_ch: int, n_classes: int, width: float, output: str = "direct"):
        super().__init__()
        c = widths(width)
        self.stem = stem(in_ch, c[0])
        self.trunk = nn.ModuleList([res_level(c[i], c[i + 1], "batch") for i in range(3)])
        self.joint = res_level(c[3], 2 * c[3], "batch")
        self.head = R2021Classifier(c[3], n_classes)
        self.decoder = R2021Decoder(c, in_ch, n_classes, output)

    def encode(self, x):
        f = self.stem(x)
        skips = [f]
        for level in self.trunk:
            f = level(f)
            skips.append(f)
        fer4, fes4 = self.joint(f).chunk(2, dim=1)
        return fer4, fes4, skips

    def fer_parameters(self):
        return [*self.stem.parameters(), *self.trunk.parameters(), *self.joint.parameters(),
                *self.head.parameters()]

    def parts(self):
        return {"fer": count(self.head), "fes": count(self.decoder), "convflu": 0,
                "shared": count(self.stem) + count(self.trunk) + count(self.joint)}


class R2021FERNet(nn.Module):
    """The FER side alone: own stem, BatchNorm BasicBlocks, a 512-channel level 4, classifier."""

    def __init__(self, in_ch: int, n_classes: int, width: float):
        super().__init__()
        c = widths(width)
        self.encoder = nn.Sequential(stem(in_ch, c[0]), *[res_level(c[i], c[i + 1], "batch") for i in range(3)],
                                     res_level(c[3], c[3], "batch"))
        self.head = R2021Classifier(c[3], n_classes)

    def forward(self, x):
        return self.head(self.encoder(x))


class R2021FESNet(nn.Module):
    """The FES side alone: own stem, InstanceNorm BasicBlocks, a 512-channel level 4, decoder."""

    def __init__(self, in_ch: int, n_classes: int, width: float, output: str = "direct"):
        super().__init__()
        c = widths(width)
        self.stem = stem(in_ch, c[0])
        self.levels = nn.ModuleList([res_level(c[i], c[i + 1], "instance") for i in range(3)])
        self.top = res_level(c[3], c[3], "batch")     # R2021's level 4 is a BatchNorm block
        self.decoder = R2021Decoder(c, in_ch, n_classes, output)

    def forward(self, x, onehot):
        h = self.stem(x)
        skips = [h]
        for level in self.levels:
            h = level(h)
            skips.append(h)
        return self.decoder(self.top(h), skips, onehot, x)


class R2021Discriminator(nn.Module):
    """R2021's conditional PatchGAN: the target one-hot tiled and concatenated to the image.

    Four 4x4 stride-2 convs (64-128-256-512 x width; InstanceNorm without affine on all but the
    first; LeakyReLU 0.2), one row and column of zeros at the top left, a 4x4 conv to one channel:
    96 px gives a 6x6 score map, each score seeing a 94x94 px window.
    """

    def __init__(self, in_ch: int, n_classes: int, chans: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_ch + n_classes
        for i, c in enumerate(chans):
            layers.append(nn.Conv2d(cin, c, 4, stride=2, padding=1))
            if i > 0:
                layers.append(nn.InstanceNorm2d(c))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = c
        layers += [nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(cin, 1, 4, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, img, onehot):
        cond = onehot.to(img.dtype)[..., None, None].expand(-1, -1, img.shape[-2], img.shape[-1])
        return self.net(torch.cat([img, cond], dim=1))


def build_r2021_generator(model_key: str, cfg: dict, n_classes: int, channels: int) -> _GeneratorNet:
    """The r2021 generator-side network of a FERSNet-family model key.

    `model.condition` does not apply (r2021 always conditions by AdaIN with noise);
    `model.width`, `model.convflu_kernel` (1 = R2021) and `model.output` do.
    """
    m = cfg["model"]
    check_crop(cfg["train"]["crop"])
    if model_key in ("fersnet", "fes_da", "fes_da_real"):
        return R2021Net(channels, n_classes, m["width"], m["convflu_kernel"], m["output"])
    if model_key == "no_convflu":
        return R2021SharedTrunkNet(channels, n_classes, m["width"], m["output"])
    if model_key == "no_mtl":
        return SingleTaskNets(R2021FERNet(channels, n_classes, m["width"]),
                              R2021FESNet(channels, n_classes, m["width"], m["output"]))
    raise KeyError(model_key)
