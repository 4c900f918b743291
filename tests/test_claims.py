"""Sentences of docs/models.md and of the report that describe the models, checked against the code:
what w/o ConvFLU changes besides the exchange, and where the expression loss's gradient goes."""
from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from fersnet import config
from fersnet.models import registry
from fersnet.models.fersnet import build_generator
from fersnet.models.tasks import expression_surrogate
from fersnet.reports import tables
from test_report import small_cfg, write_grid
from fersnet.reports import aggregate as agg

ROOT = Path(__file__).resolve().parents[1]


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def norms(module) -> Counter:
    return Counter(type(m).__name__ for m in module.modules() if "Norm" in type(m).__name__)


def test_without_convflu_one_batchnorm_trunk_replaces_two_branches_and_their_convflus():
    # docs/models.md, "Ablations": at paper scale 2.18M fewer parameters = the ConvFLUs (1.03M) + one
    # set of levels 1-3 (1.15M); the trunk is BatchNorm where FERSNet's FES levels 1-3 are InstanceNorm.
    cfg = config.load(ROOT / "params.yaml", profile="paper")
    fers, shared = build_generator("fersnet", cfg, 7, 1), build_generator("no_convflu", cfg, 7, 1)
    assert count(fers) - count(shared) == count(fers.flus) + count(fers.fes[:3]) == 2_179_136
    assert count(fers.flus) == 1_033_984 and count(fers.fes[:3]) == count(fers.fer[:3]) == count(shared.trunk)
    assert norms(shared.trunk) == norms(fers.fer[:3]) == Counter(BatchNorm2d=6)
    assert norms(fers.fes[:3]) == Counter(InstanceNorm2d=6)
    # what is not shared stays FERSNet's: level 4 of each task, the classifier, the decoder
    assert count(shared.fer_top) == count(fers.fer[3]) and count(shared.fes_top) == count(fers.fes[3])
    assert norms(shared.fes_top) == norms(fers.fes[3]) == Counter(InstanceNorm2d=2)
    assert count(shared.head) == count(fers.head) and count(shared.decoder) == count(fers.decoder)


def test_the_expression_loss_reaches_the_fer_levels_1_3_through_the_fake_but_not_the_classifier():
    # docs/models.md, "Expression loss": the gradient goes only through the fake image, so the
    # classifier and FER level 4 get none; the FER levels 1-3 feed the FES side through the ConvFLUs
    # and do get it, as they get the cycle loss (the fake runs through them in the cycle pass).
    cfg = copy.deepcopy(config.load(ROOT / "params.yaml", profile="test"))
    cfg["model"]["output"] = "direct"          # the residual output starts as the identity: no gradient at init
    torch.manual_seed(0)
    task = registry.build("fersnet", cfg, 6, 1)
    gen = task.gen
    x, s, t = torch.rand(4, 1, 20, 20), torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 4])
    _, fake = gen(x, task.onehot(t))
    logits_fake, rec = gen(fake, task.onehot(s))

    def grads(loss):
        gen.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        return lambda m: sum(float(p.grad.abs().sum()) for p in m.parameters() if p.grad is not None)

    g = grads(expression_surrogate(F.cross_entropy(logits_fake, t), fake))
    assert all(g(level) > 0 for level in gen.fer[:3])
    assert g(gen.fer[3]) == 0 and g(gen.head) == 0
    assert all(g(pair.to_fer) > 0 for pair in gen.flus[:2])
    g = grads(F.mse_loss(rec, x))
    assert all(g(level) > 0 for level in gen.fer[:3]) and g(gen.head) == 0


def test_the_ablation_caption_says_what_else_without_convflu_changes(tmp_path):
    cfg = small_cfg(tmp_path, ("ckplus",))
    cfg["models"], cfg["n_folds"] = ["fersnet", "no_convflu"], 2
    write_grid(cfg, ("ckplus",))
    tex, _ = tables.ablation(cfg, agg.collect(cfg))
    assert "one set of those levels instead of two" in tex and "BatchNorm where" in tex
    cfg["models"] = ["fersnet", "no_mtl"]
    tex, _ = tables.ablation(cfg, agg.collect(cfg))
    assert "hard parameter sharing" not in tex
