"""ConvFLU (paper.md 1.2) against an independent computation, its gate limits, and gradient flow."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fersnet.models.convflu import ConvFLU, ConvFLUPair
from fersnet.models.fersnet import FERSNet


def reference_convflu(unit: ConvFLU, fx, fy, pad):
    """The paper's four equations written out with F.conv2d on the unit's weights."""
    both = torch.cat([fx, fy], 1)
    r = torch.sigmoid(F.conv2d(both, unit.w_r.weight, unit.w_r.bias, padding=pad))
    cand = torch.tanh(F.conv2d(r * fy, unit.w.weight, padding=pad) + F.conv2d(fx, unit.u.weight, padding=pad))
    z = torch.sigmoid(F.conv2d(both, unit.w_z.weight, unit.w_z.bias, padding=pad))
    return (1 - z) * fx + z * cand, cand


@pytest.mark.parametrize("kernel", [1, 3])
def test_convflu_matches_the_equations_on_random_tensors(kernel):
    torch.manual_seed(0)
    unit = ConvFLU(5, kernel)
    fx, fy = torch.randn(2, 5, 7, 7), torch.randn(2, 5, 7, 7)
    out, r, z = unit(fx, fy)
    expected, _ = reference_convflu(unit, fx, fy, kernel // 2)
    assert out.shape == fx.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert r.shape == z.shape == fx.shape


def _force_memory_gate(unit: ConvFLU, bias: float) -> None:
    with torch.no_grad():
        unit.w_z.weight.zero_()
        unit.w_z.bias.fill_(bias)


def test_convflu_memory_gate_keeps_own_features_when_closed():
    torch.manual_seed(1)
    unit = ConvFLU(4, 3)
    _force_memory_gate(unit, -50.0)           # z -> 0
    fx, fy = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    out, _, z = unit(fx, fy)
    assert float(z.detach().max()) < 1e-12
    torch.testing.assert_close(out, fx)


def test_convflu_memory_gate_takes_candidate_when_open():
    torch.manual_seed(2)
    unit = ConvFLU(4, 1)
    _force_memory_gate(unit, 50.0)            # z -> 1
    fx, fy = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    out, _, _ = unit(fx, fy)
    _, candidate = reference_convflu(unit, fx, fy, 0)
    torch.testing.assert_close(out, candidate)
    assert not torch.allclose(out, fx)


def test_convflu_closed_leaky_gate_blocks_the_other_branch():
    torch.manual_seed(3)
    unit = ConvFLU(3, 1)
    with torch.no_grad():
        unit.w_r.weight.zero_()
        unit.w_r.bias.fill_(-50.0)            # r -> 0: F~ = tanh(U * F_x) whatever F_y is
        unit.w_z.weight[:, 3:].zero_()        # and z must not read F_y either
    fx = torch.randn(1, 3, 5, 5)
    a, _, _ = unit(fx, torch.randn(1, 3, 5, 5))
    b, _, _ = unit(fx, torch.randn(1, 3, 5, 5) * 10)
    torch.testing.assert_close(a, b)


def test_convflu_pair_reads_pre_update_features():
    torch.manual_seed(4)
    pair = ConvFLUPair(3, 3)
    f_fer, f_fes = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5)
    new_fer, new_fes = pair(f_fer, f_fes)
    torch.testing.assert_close(new_fer, pair.to_fer(f_fer, f_fes)[0])
    torch.testing.assert_close(new_fes, pair.to_fes(f_fes, f_fer)[0])
    assert set(pair.last_gates) == {"fer_r", "fer_z", "fes_r", "fes_z"}


def test_gradients_reach_both_branches_through_the_units():
    torch.manual_seed(5)
    net = FERSNet(1, 6, width=0.0625, kernel=1)
    x, onehot = torch.rand(2, 1, 16, 16), torch.eye(6)[[0, 3]]
    logits, image = net(x, onehot)
    # recognition loss alone reaches the FES branch's first level (via the FES -> FER units) ...
    logits.sum().backward(retain_graph=True)
    assert net.fes[0].block[0].weight.grad.abs().sum() > 0
    net.zero_grad()
    # ... and the synthesis loss alone reaches the FER branch's first level
    image.mean().backward()
    assert net.fer[0].block[0].weight.grad.abs().sum() > 0


def test_gate_means_are_reported_per_direction_and_level():
    net = FERSNet(1, 6, width=0.0625)
    net(torch.rand(2, 1, 16, 16), torch.eye(6)[[1, 2]])
    gates = net.gate_means()
    assert set(gates) == {f"{d}_{g}_l{l}" for d in ("fer", "fes") for g in ("r", "z") for l in (1, 2, 3)}
    assert all(0.0 < float(v) < 1.0 for v in gates.values())
