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


# --- model.arch: r2021, the authors' released network (fersnet/models/r2021.py) ---------------

def _r2021(cfg, crop=64):
    cfg = copy.deepcopy(cfg)
    cfg["model"]["arch"] = "r2021"
    cfg["train"]["crop"] = crop
    return cfg


def _batch(n, channels, crop, n_classes=6):
    torch.manual_seed(0)
    s = torch.arange(n) % n_classes
    return {"x": torch.rand(n, channels, crop, crop), "s": s, "xt": torch.rand(n, channels, crop, crop),
            "t": (s + 1) % n_classes, "has_t": torch.tensor([True] * (n - 1) + [False]), "step": 0}


def test_r2021_has_the_authors_parameter_counts_at_3_channels_6_classes_96_px(test_cfg):
    # measured from the authors' code (cikrhazo/FERSNet a5d9d2e); width 1.0 is the authors' width
    assert registry.r2021_reference_counts(test_cfg) == {"generator_net": 53_983_438, "discriminator": 2_770_881}


def test_r2021_parts_add_up_and_its_convflus_are_bias_free(test_cfg):
    net = registry.build("fersnet", registry.paper_scale(test_cfg, "r2021"), 6, 3).gen
    parts = net.parts()
    assert sum(parts.values()) == sum(p.numel() for p in net.parameters())
    assert parts["convflu"] == 4_128_768 and parts["shared"] > 0      # the authors' 6 ConvFLUs
    assert all(conv.bias is None for pair in net.flus for unit in (pair.to_fer, pair.to_fes)
               for conv in (unit.w_r, unit.w, unit.u, unit.w_z))


def test_r2021_one_training_step_runs_forward_and_backward_through_every_part(test_cfg):
    from fersnet.models.r2021 import R2021Discriminator, R2021Net
    task = registry.build("fersnet", _r2021(test_cfg), 6, 1)
    assert isinstance(task.gen, R2021Net) and isinstance(task.disc, R2021Discriminator)
    before = {k: v.clone() for k, v in task.state_dict().items()}
    out = task.train_step(_batch(4, 1, 64))
    for key in ("D/loss", "G/loss", "C/loss_ce", "G/loss_adv", "G/loss_l1", "G/loss_cyc", "gate/fer_z_l3"):
        assert torch.isfinite(out[key]), key
    for name, p in task.gen.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
    moved = {k.split(".")[1] for k, v in task.state_dict().items()
             if v.is_floating_point() and not torch.equal(v, before[k])}
    assert {"stem", "fer", "fes", "flus", "joint", "head", "decoder", "net"} <= moved


@pytest.mark.parametrize("model", ["fersnet", "no_mtl", "no_convflu"])
def test_every_r2021_model_classifies_and_synthesizes_unit_range_images(test_cfg, model):
    task = registry.build(model, _r2021(test_cfg), 7, 3).eval()
    x = torch.rand(2, 3, 64, 64)
    out = task.synthesize(x, torch.tensor([0, 6]))
    assert out.shape == x.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert task.classify(x).shape == (2, 7)


def test_r2021_ablations_remove_the_exchange_and_the_sharing(test_cfg):
    cfg = _r2021(test_cfg)
    no_convflu = registry.build("no_convflu", cfg, 6, 1).gen
    assert _convflus(no_convflu) == [] and no_convflu.parts()["shared"] > 0
    no_mtl = registry.build("no_mtl", cfg, 6, 1).gen
    assert isinstance(no_mtl, SingleTaskNets) and _convflus(no_mtl) == []
    fer_ids = {id(p) for p in no_mtl.fer_net.parameters()}
    assert fer_ids and not fer_ids & {id(p) for p in no_mtl.fes_net.parameters()}


def test_r2021_refuses_a_crop_it_cannot_halve_five_times(test_cfg):
    from fersnet.errors import FersnetError
    with pytest.raises(FersnetError, match="train.crop"):
        registry.build("fersnet", _r2021(test_cfg, crop=32), 6, 1)
    with pytest.raises(FersnetError, match="train.crop"):
        registry.build("fersnet", _r2021(test_cfg, crop=80), 6, 1)


def test_r2021_fes_da_fine_tuning_leaves_the_fes_side_unchanged(test_cfg):
    from fersnet.models.tasks import FerFinetuneTask
    cfg = _r2021(test_cfg)
    gen = registry.build("fes_da", cfg, 6, 1).gen
    fes = {k: v.clone() for k, v in gen.state_dict().items() if k.startswith(("fes.", "decoder."))}
    out = FerFinetuneTask(gen, cfg, 6).train_step(_batch(4, 1, 64))
    assert torch.isfinite(out["C/loss_ce"])
    for k, v in fes.items():
        assert torch.equal(gen.state_dict()[k], v), k


def test_discriminator_receptive_fields_and_score_maps_at_96_px(test_cfg):
    from fersnet.models.blocks import receptive_field
    sizes = {}
    for arch in ("paper", "r2021"):
        cfg = _r2021(test_cfg, crop=96)
        cfg["model"]["arch"] = arch
        disc = registry.build("fersnet", cfg, 6, 1).disc.eval()
        sizes[arch] = (receptive_field(disc), tuple(disc(torch.rand(1, 1, 96, 96), torch.eye(6)[[2]]).shape[-2:]))
    assert sizes == {"paper": (54, (12, 12)), "r2021": (94, (6, 6))}


def test_cli_trains_r2021_with_one_key_changed(tmp_path):
    import json
    from pathlib import Path

    import yaml
    from conftest import write_processed
    from fersnet import paths
    from fersnet.cli import main
    from fersnet.models.registry import load_generator
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["preprocess"]["out"] = str(tmp_path / "processed")
    raw["paths"]["results"] = str(tmp_path / "results")
    raw["mlflow"]["enabled"] = False
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    write_processed(tmp_path / "processed" / "ckplus", n_subjects=10, size=72)
    sets = ["model.arch=r2021", "train.crop=64", "preprocess.size=72"]
    code = main(["train", "--params", str(params), "--profile", "test", "--db", "ckplus", "--model", "fersnet",
                 "--fold", "0", *[a for s in sets for a in ("--set", s)]])
    assert code == 0
    run = paths.run_dir(raw, "ckplus", "fersnet", 0, seed=raw["run_seeds"][0])
    assert json.loads((run / paths.CONFIG).read_text())["model"]["arch"] == "r2021"
    assert json.loads((run / paths.METRICS).read_text())["accuracy"] is not None
    assert load_generator(run)(torch.rand(2, 1, 64, 64), torch.tensor([0, 3])).shape == (2, 1, 64, 64)


@pytest.mark.parametrize("arch", ["paper", "r2021"])
def test_a_training_step_under_bf16_autocast_keeps_the_expression_loss(test_cfg, arch):
    # as on CUDA (bf16 autocast): the fake is bf16, and the expression loss must still reach it
    cfg = _r2021(test_cfg)
    cfg["model"]["arch"] = arch
    cfg["train"]["lambda_expr"] = 0.3
    task = registry.build("fersnet", cfg, 6, 3)
    task.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    out = task.train_step(_batch(4, 3, 64))
    assert torch.isfinite(out["G/loss_expr"]) and torch.isfinite(out["G/loss"])


def test_synthesis_losses_name_each_generators_target_signal(test_cfg):
    cfg = copy.deepcopy(test_cfg)
    cfg["train"]["lambda_expr"] = 0.3
    assert registry.target_signal("fersnet", cfg) == ("expr", 0.3)
    assert registry.target_signal("no_convflu", cfg) == ("expr", 0.3)
    assert registry.target_signal("no_mtl", cfg) is None                 # no FER branch to take it
    assert registry.target_signal("stargan", cfg) == ("cls", cfg["stargan"]["lambda_cls"])
    cfg["train"]["lambda_expr"] = 0.0
    assert registry.target_signal("fersnet", cfg) is None
    assert [name for name, _, _ in registry.synthesis_losses("fersnet", cfg)] == ["adv", "L1", "cyc"]
