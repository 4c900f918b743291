"""Convolutional Feature Leaky Unit (ConvFLU), paper.md section 1.2.

For the receiving branch's features F_x and the other branch's F_y at one level:

    r  = sigmoid(W_r * [F_x, F_y])                 leaky gate: how much of F_y may leak in
    F~ = tanh(W * (r . F_y) + U * F_x)             candidate features
    z  = sigmoid(W_z * [F_x, F_y])                 memory gate: how much to replace
    F_x' = (1 - z) . F_x + z . F~

We follow the paper's convention (z on the new term); the authors' code swaps z and 1 - z,
which is the same family of functions because sigmoid(-a) = 1 - sigmoid(a).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvFLU(nn.Module):
    """One direction of feature exchange: updates F_x with what the gates let through from F_y.

    By default the gate convolutions carry a bias (the paper's equations show none): it lets a
    gate open or close independently of the features, which is also what makes the limiting
    cases z -> 0 / z -> 1 reachable by a parameter setting (tests/test_convflu.py).
    `gate_bias=False` is the equations as written and the authors' code (model.arch r2021).
    """

    def __init__(self, channels: int, kernel: int = 1, gate_bias: bool = True):
        super().__init__()
        pad = self.pad = kernel // 2
        self.w_r = nn.Conv2d(2 * channels, channels, kernel, padding=pad, bias=gate_bias)
        self.w = nn.Conv2d(channels, channels, kernel, padding=pad, bias=False)
        self.u = nn.Conv2d(channels, channels, kernel, padding=pad, bias=False)
        self.w_z = nn.Conv2d(2 * channels, channels, kernel, padding=pad, bias=gate_bias)

    def forward(self, fx: torch.Tensor, fy: torch.Tensor):
        """Return (F_x', r, z) for features fx (receiving) and fy (other branch)."""
        both = torch.cat([fx, fy], dim=1)
        # Both gates read [F_x, F_y]: one convolution with the stacked weights of W_r and W_z,
        # and W * a + U * b = [W U] * [a; b]: the same function with half the convolution calls.
        bias = None if self.w_r.bias is None else torch.cat([self.w_r.bias, self.w_z.bias])
        gates = torch.sigmoid(F.conv2d(both, torch.cat([self.w_r.weight, self.w_z.weight]), bias,
                                       padding=self.pad))
        r, z = gates.chunk(2, dim=1)
        candidate = torch.tanh(F.conv2d(torch.cat([r * fy, fx], dim=1),
                                        torch.cat([self.w.weight, self.u.weight], dim=1), padding=self.pad))
        return torch.lerp(fx, candidate, z), r, z


class ConvFLUPair(nn.Module):
    """The two units of one level: FES -> FER and FER -> FES.

    Both read the features from before either update (paper.md 1.2: "both units read the
    pre-update features"). The mean gate values of the last call are kept, detached, for logging.
    """

    def __init__(self, channels: int, kernel: int = 1, gate_bias: bool = True):
        super().__init__()
        self.to_fer = ConvFLU(channels, kernel, gate_bias)
        self.to_fes = ConvFLU(channels, kernel, gate_bias)
        self.last_gates: dict[str, torch.Tensor] = {}

    def forward(self, f_fer: torch.Tensor, f_fes: torch.Tensor):
        """Return the updated (FER, FES) features."""
        new_fer, r_fer, z_fer = self.to_fer(f_fer, f_fes)
        new_fes, r_fes, z_fes = self.to_fes(f_fes, f_fer)
        self.last_gates = {"fer_r": r_fer.detach().mean(), "fer_z": z_fer.detach().mean(),
                           "fes_r": r_fes.detach().mean(), "fes_z": z_fes.detach().mean()}
        return new_fer, new_fes
