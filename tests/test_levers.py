"""The training step's speed levers change no result: the step equals the straightforward one.

The straightforward step below is the step as it was before the levers (discriminator called
once for real and once for fake faces, StarGAN's fake rendered again for the G update,
InstanceNorm through nn.InstanceNorm2d). The comparison runs in float64: in float32 the two
paths differ by rounding (different batch sizes inside a convolution, GroupNorm's reduction
order), and Adam's first update, lr * g / |g|, turns a rounding difference on a near-zero
gradient into a full learning-rate step, so float32 trajectories of equal maths part after a
few steps. In float64 the rounding is far below the tolerances used here.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fersnet import config
from fersnet.models import blocks, registry
from fersnet.models.tasks import expression_surrogate, set_requires_grad
from fersnet.training import batches as B


@contextlib.contextmanager
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@contextlib.contextmanager
def plain_instance_norm():
    """InstanceNorm through nn.InstanceNorm2d's own forward (instance_norm), as before."""
    fast = blocks.InstanceNorm2d.forward
    blocks.InstanceNorm2d.forward = nn.InstanceNorm2d.forward
    try:
        yield
    finally:
        blocks.InstanceNorm2d.forward = fast


def straightforward_fersnet_step(task, batch):
    x, s, xt, t, has_t = batch["x"], batch["s"], batch["xt"], batch["t"], batch["has_t"]
    oh_s, oh_t = task.onehot(s), task.onehot(t)
    out = {}
    logits, fake = task.gen(x, oh_t)
    set_requires_grad(task.disc, True)
    real = torch.where(has_t[:, None, None, None], xt, x)
    real_oh = torch.where(has_t[:, None], oh_t, oh_s)
    fake_d = fake.detach()
    for _ in range(task.d_steps):
        d_real = task.disc(real, real_oh).float()
        d_fake = task.disc(fake_d, oh_t).float()
        loss_real = F.mse_loss(d_real, torch.ones_like(d_real))
        loss_fake = F.mse_loss(d_fake, torch.zeros_like(d_fake))
        loss_d = 0.5 * (loss_real + loss_fake)
        task.optimizers["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        task.optimizers["D"].step()
    out.update({"D/loss_real": loss_real, "D/loss_fake": loss_fake, "D/loss": loss_d})
    set_requires_grad(task.disc, False)
    score = task.disc(fake, oh_t).float()
    logits_fake, rec = None, None
    if task.lam["expr"] > 0:
        logits_fake, rec = task.gen(fake, oh_s)
    elif task.lam["cyc"] > 0:
        rec = task.gen.synthesize(fake, oh_s)
    logits, fake_seen, fake = logits.float(), fake, fake.float()
    loss_ce = F.cross_entropy(logits, s)
    loss_adv = F.mse_loss(score, torch.ones_like(score))
    per_item = (fake - xt).abs().mean(dim=(1, 2, 3))
    loss_l1 = (per_item * has_t).sum() / has_t.sum().clamp(min=1)
    total = task.lam["cls"] * loss_ce + task.lam["adv"] * loss_adv + task.lam["l1"] * loss_l1
    out.update({"C/loss_ce": loss_ce, "G/loss_adv": loss_adv, "G/loss_l1": loss_l1})
    if rec is not None:
        loss_cyc = F.mse_loss(rec.float(), x)
        total = total + task.lam["cyc"] * loss_cyc
        out["G/loss_cyc"] = loss_cyc
    if logits_fake is not None:
        loss_expr = F.cross_entropy(logits_fake.float(), t)
        total = total + task.lam["expr"] * expression_surrogate(loss_expr, fake_seen)
        out["G/loss_expr"] = loss_expr
    task.optimizers["G"].zero_grad(set_to_none=True)
    total.backward()
    task.optimizers["G"].step()
    out["G/loss"] = total
    return out


def straightforward_stargan_step(task, batch):
    x, s, t = batch["x"], batch["s"], batch["t"]
    oh_s, oh_t = task.onehot(s), task.onehot(t)
    out = {}
    set_requires_grad(task.disc, True)
    src_real, cls_real = task.disc(x)
    fake = task.gen(x, oh_t).detach()
    src_fake, _ = task.disc(fake)
    loss_real = -src_real.float().mean()
    loss_fake = src_fake.float().mean()
    loss_cls = F.cross_entropy(cls_real.float(), s)
    loss_gp = task.gradient_penalty(x, fake.float())
    loss_d = loss_real + loss_fake + task.lam["cls"] * loss_cls + task.lam["gp"] * loss_gp
    task.optimizers["D"].zero_grad(set_to_none=True)
    loss_d.backward()
    task.optimizers["D"].step()
    out.update({"D/loss_real": loss_real, "D/loss_fake": loss_fake, "D/loss_cls": loss_cls,
                "D/loss_gp": loss_gp, "D/loss": loss_d})
    if (batch["step"] + 1) % task.n_critic == 0:
        set_requires_grad(task.disc, False)
        fake = task.gen(x, oh_t)
        src, cls = task.disc(fake)
        rec = task.gen(fake, oh_s)
        loss_g_fake = -src.float().mean()
        loss_g_cls = F.cross_entropy(cls.float(), t)
        # the loss formulas are the task's own (checked against the paper in test_stargan_losses.py)
        loss_rec = task.reconstruction_loss(x, rec.float())
        loss_g = loss_g_fake + task.lam["cls"] * loss_g_cls + task.lam["rec"] * loss_rec
        task.optimizers["G"].zero_grad(set_to_none=True)
        loss_g.backward()
        task.optimizers["G"].step()
        out.update({"G/loss_fake": loss_g_fake, "G/loss_cls": loss_g_cls, "G/loss_rec": loss_rec,
                    "G/loss": loss_g})
    return out


def two_batches(cfg, seed=0, dtype=torch.float64):
    """Two training batches of random faces at the profile's crop and batch size, in float64."""
    rng = np.random.default_rng(seed)
    size, crop, bs = cfg["preprocess"]["size"], cfg["train"]["crop"], cfg["train"]["batch_size"]
    images = rng.integers(0, 256, (48, size, size, 1), dtype=np.uint8)
    # subjects 0 and 1 show one expression only: their faces have no real target face
    labels = np.concatenate([np.zeros(12, np.int64), np.full(12, 3), np.arange(24) % 6])
    subjects = np.repeat([f"S{i}" for i in range(4)], 12)
    data = B.DeviceData.from_arrays(images, labels, subjects, "cpu")
    pairs = B.PairIndex.build(data, np.arange(len(images)))
    plan = B.make_plan(pairs, data.labels_cpu, 6, size, crop, torch.Generator().manual_seed(seed))
    out = []
    for step, batch in zip(range(2), B.DeviceBatcher(data, crop, bs).batches(plan)):
        batch = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in batch.items()}
        batch["step"] = step
        out.append(batch)
    assert any(not bool(b["has_t"].all()) for b in out)    # paired and unpaired items both occur
    return out


@pytest.mark.parametrize("model", ["fersnet", "no_mtl", "no_convflu", "stargan"])
def test_fast_step_gives_the_losses_and_weights_of_the_straightforward_step(model):
    cfg = config.load("params.yaml", "test")
    cfg["stargan"]["n_critic"] = 2            # the second step updates StarGAN's generator too
    reference = straightforward_stargan_step if model == "stargan" else straightforward_fersnet_step
    with float64():
        tasks = []
        for _ in range(2):
            torch.manual_seed(0)
            tasks.append(registry.build(model, cfg, 6, 1).train())
        fast, slow = tasks
        for batch in two_batches(cfg):
            torch.manual_seed(1 + batch["step"])
            got = fast.train_step(dict(batch))
            torch.manual_seed(1 + batch["step"])
            with plain_instance_norm():
                want = reference(slow, dict(batch))
            assert set(want) <= set(got)
            for k in want:
                torch.testing.assert_close(got[k].double(), want[k].detach().double(), rtol=1e-6, atol=1e-12,
                                           msg=lambda m, k=k: f"step {batch['step']} {k}: {m}")
    assert "G/loss" in got                    # the generator was updated on the last step
    a, b = fast.state_dict(), slow.state_dict()
    assert list(a) == list(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-10, msg=lambda m, k=k: f"{k}: {m}")
    # the update moved the weights (the comparison above is not between two untouched networks)
    torch.manual_seed(0)
    fresh = registry.build(model, cfg, 6, 1).state_dict()
    assert any(not torch.equal(fresh[k].double(), a[k]) for k in a if k.startswith("gen."))


@pytest.mark.parametrize("model", ["fersnet", "stargan"])
def test_fast_ops_off_is_the_straightforward_step_to_the_last_bit_in_float32(model):
    # train.fast_ops: no (the CPU default) takes the straightforward step's float32 path itself:
    # losses and weights identical bit for bit, where the fast path only agrees in float64
    cfg = config.load("params.yaml", "test")
    cfg["stargan"]["n_critic"] = 2
    reference = straightforward_stargan_step if model == "stargan" else straightforward_fersnet_step
    tasks = []
    for _ in range(3):
        torch.manual_seed(0)
        tasks.append(registry.build(model, cfg, 6, 1).train())
    off, slow, fast = tasks
    off.set_fast_ops(False)
    assert not off.batched_disc and fast.batched_disc
    norms = [m for m in off.modules() if isinstance(m, blocks.InstanceNorm2d)]
    assert norms and not any(m.via_group_norm for m in norms)
    for batch in two_batches(cfg, dtype=torch.float32):
        torch.manual_seed(1 + batch["step"])
        got = off.train_step(dict(batch))
        torch.manual_seed(1 + batch["step"])
        with plain_instance_norm():
            want = reference(slow, dict(batch))
        torch.manual_seed(1 + batch["step"])
        fast.train_step(dict(batch))
        for k in want:
            assert torch.equal(got[k], want[k].detach()), (batch["step"], k)
    assert "G/loss" in got
    a, b, c = off.state_dict(), slow.state_dict(), fast.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the fast path rounds differently in float32: the comparison above can tell the two apart
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_as_group_norm_equals_instance_norm_forward_and_backward(affine):
    torch.manual_seed(0)
    fast = blocks.InstanceNorm2d(5, affine=affine)
    plain = nn.InstanceNorm2d(5, affine=affine)
    if affine:
        with torch.no_grad():
            fast.weight.uniform_(0.5, 1.5)
            fast.bias.uniform_(-1, 1)
        plain.load_state_dict(fast.state_dict())
    x = (torch.randn(3, 5, 7, 6) * 3 + 1).requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    y, y2 = fast(x), plain(x2)
    torch.testing.assert_close(y, y2, rtol=1e-5, atol=1e-5)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (y2 * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-5)
    if affine:
        torch.testing.assert_close(fast.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast.bias.grad, plain.bias.grad, rtol=1e-4, atol=1e-4)
    assert list(fast.state_dict()) == list(plain.state_dict())
