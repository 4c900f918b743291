"""Each model variant has the structure its name says; outputs live where the contracts say."""
from __future__ import annotations

import copy

import pytest
import torch

from fersnet.models import registry
from fersnet.models.convflu import ConvFLU, ConvFLUPair
from fersnet.models.fersnet import FERSNet, SharedTrunkNet, SingleTaskNets


def _convflus(module):
    return [m for m in module.modules() if isinstance(m, (ConvFLU, ConvFLUPair))]


def test_fersnet_has_a_convflu_pair_after_levels_1_to_3_with_separate_weights(test_cfg):
    task = registry.build("fersnet", test_cfg, 6, 1)
    net = task.gen
    assert isinstance(net, FERSNet)
    assert len(net.flus) == 3 and all(isinstance(p, ConvFLUPair) for p in net.flus)
    ids = [id(p) for pair in net.flus for p in pair.parameters()]
    assert len(ids) == len(set(ids))          # no weight reused across levels (unlike R2020)
    channels = [pair.to_fer.u.in_channels for pair in net.flus]
    assert channels == [net.fer[i].block[0].out_channels for i in range(3)]


def test_no_convflu_has_no_convflu_and_shares_trunk_weights(test_cfg):
    cfg = copy.deepcopy(test_cfg)
    cfg["model"]["output"] = "direct"     # a residual decoder starts with zero output weights
    net = registry.build("no_convflu", cfg, 6, 1).gen
    assert isinstance(net, SharedTrunkNet)
    assert _convflus(net) == []
    x, onehot = torch.rand(2, 1, 20, 20), torch.eye(6)[[0, 1]]
    logits, image = net(x, onehot)
    first = net.trunk[0].block[0].weight
    g_fer = torch.autograd.grad(logits.sum(), first, retain_graph=True)[0]
    g_fes = torch.autograd.grad(image.mean(), first)[0]
    assert g_fer.abs().sum() > 0 and g_fes.abs().sum() > 0   # both tasks train the same weights


def test_no_mtl_fer_and_fes_nets_share_no_parameters_and_exchange_nothing(test_cfg):
    cfg = copy.deepcopy(test_cfg)
    cfg["model"]["output"] = "direct"
    net = registry.build("no_mtl", cfg, 6, 1).gen
    assert isinstance(net, SingleTaskNets) and _convflus(net) == []
    fer_ids = {id(p) for p in net.fer_net.parameters()}
    fes_ids = {id(p) for p in net.fes_net.parameters()}
    assert fer_ids and fes_ids and not fer_ids & fes_ids
    net.eval()
    x, onehot = torch.rand(2, 1, 20, 20), torch.eye(6)[[2, 3]]
    logits, image = net(x, onehot)
    with torch.no_grad():                     # scramble the FES net: the FER logits must not move
        for p in net.fes_net.parameters():
            p.add_(torch.randn_like(p))
    logits2, image2 = net(x, onehot)
    torch.testing.assert_close(logits, logits2)
    assert not torch.allclose(image, image2)


def test_no_mtl_generator_gets_no_expression_loss(test_cfg):
    assert registry.build("no_mtl", test_cfg, 6, 1).lam["expr"] == 0.0
    assert registry.build("fersnet", test_cfg, 6, 1).lam["expr"] == test_cfg["train"]["lambda_expr"]


@pytest.mark.parametrize("model", ["fersnet", "no_mtl", "no_convflu", "stargan"])
@pytest.mark.parametrize("condition", ["concat", "cin", "adain"])
def test_every_generator_maps_unit_range_images_to_unit_range_images(test_cfg, model, condition):
    cfg = copy.deepcopy(test_cfg)
    cfg["model"]["condition"] = condition
    task = registry.build(model, cfg, 7, 3).eval()
    x = torch.rand(3, 3, 20, 20)
    out = task.synthesize(x, torch.tensor([0, 4, 6]))
    assert out.shape == x.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    logits = task.classify(x)
    assert (logits is None) == (model == "stargan")
    if logits is not None:
        assert logits.shape == (3, 7)


def test_condition_changes_the_synthesized_face(test_cfg):
    torch.manual_seed(0)
    cfg = copy.deepcopy(test_cfg)
    cfg["model"]["output"] = "direct"
    task = registry.build("fersnet", cfg, 6, 1).eval()
    x = torch.rand(1, 1, 20, 20)
    a, b = task.synthesize(x, torch.tensor([0])), task.synthesize(x, torch.tensor([5]))
    assert not torch.allclose(a, b)


def test_conditional_patch_discriminator_scores_patches_and_reads_the_label(test_cfg):
    torch.manual_seed(0)
    disc = registry.build("fersnet", test_cfg, 6, 1).disc.eval()
    x = torch.rand(2, 1, 20, 20)
    s0, s1 = disc(x, torch.eye(6)[[0, 0]]), disc(x, torch.eye(6)[[1, 1]])
    assert s0.shape[:2] == (2, 1) and s0.shape[-1] > 1      # a map of patch scores
    assert not torch.allclose(s0, s1)


def test_stargan_discriminator_has_adversarial_and_classification_heads(test_cfg):
    disc = registry.build("stargan", test_cfg, 6, 1).disc
    src, cls = disc(torch.rand(2, 1, 20, 20))
    assert src.shape[:2] == (2, 1) and cls.shape == (2, 6)


def test_parameter_counts_cover_every_model_and_part(test_cfg):
    rows = registry.count_params(test_cfg, 7, 1)
    by = {r["model"]: r for r in rows}
    assert set(by) == {"fersnet", "no_mtl", "no_convflu", "stargan"}
    assert by["fersnet"]["convflu"] > 0 and by["no_convflu"]["convflu"] == 0
    assert by["no_convflu"]["shared"] > 0
    f = by["fersnet"]
    assert f["fer"] + f["fes"] + f["convflu"] == f["generator_net"]
    # fersnet = no_mtl's two networks + the ConvFLUs
    assert by["fersnet"]["generator_net"] == by["no_mtl"]["generator_net"] + f["convflu"]
    table = registry.markdown_table(rows, 1)
    assert table.count("\n| ") == 1 + len(rows) and "| fersnet | 7 |" in table


def test_residual_decoder_starts_as_the_identity(test_cfg):
    cfg = copy.deepcopy(test_cfg)
    cfg["model"]["output"] = "residual"
    task = registry.build("fersnet", cfg, 6, 1).eval()
    x = torch.rand(2, 1, 20, 20) * 0.9 + 0.05
    torch.testing.assert_close(task.synthesize(x, torch.tensor([1, 4])), x, atol=1e-5, rtol=0)


def test_expression_loss_trains_the_generator_but_not_the_fer_branch():
    from fersnet.models.tasks import expression_surrogate
    torch.manual_seed(0)
    gen, fer = torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.Linear(16, 3)
    fake = gen(torch.rand(2, 1, 4, 4))
    loss = torch.nn.functional.cross_entropy(fer(fake.flatten(1)), torch.tensor([0, 2]))
    term = expression_surrogate(loss, fake)
    torch.testing.assert_close(term, loss)
    term.backward()
    assert gen.weight.grad.abs().sum() > 0 and fer.weight.grad is None


def test_concat_condition_reaches_the_bottleneck_interior_not_only_its_border():
    # A tiled one-hot is constant over space; an InstanceNorm straight after the concatenation
    # subtracts it again, so the target then changes the interior by ~1.5 % (measured) instead of ~9 %.
    from fersnet.models.blocks import Decoder
    torch.manual_seed(0)
    dec = Decoder([4, 8, 16, 32], 1, 7, "concat", "direct")
    f4 = torch.rand(2, 32, 16, 16)
    with torch.no_grad():
        def bottleneck(t):
            onehot = torch.eye(7)[[t, t]]
            return dec.bottleneck(torch.cat([f4, dec.transformer(onehot, (16, 16))], 1))
        change = (bottleneck(0) - bottleneck(3)).abs()[..., 2:-2, 2:-2].mean()
        scale = bottleneck(0).abs().mean()
    assert change / scale > 0.03


def test_cin_decoder_norms_take_their_scale_and_shift_from_the_target():
    from fersnet.models.blocks import ConditionalInstanceNorm, Decoder
    torch.manual_seed(0)
    norm = ConditionalInstanceNorm(3, 4)
    x = torch.randn(2, 3, 5, 5)
    plain = torch.nn.functional.instance_norm(x)
    torch.testing.assert_close(norm(x, torch.eye(4)[[0, 2]]), plain)       # starts as InstanceNorm
    with torch.no_grad():
        norm.gamma.weight[:, 2] = 2.0
        norm.beta.weight[:, 2] = 0.5
    out = norm(x, torch.eye(4)[[0, 2]])
    torch.testing.assert_close(out[0], plain[0])
    torch.testing.assert_close(out[1], plain[1] * 2.0 + 0.5)
    dec = Decoder([4, 8, 16, 32], 1, 7, "cin", "direct")
    assert sum(isinstance(m, ConditionalInstanceNorm) for m in dec.modules()) == 6   # 3 up blocks x 2 convs
