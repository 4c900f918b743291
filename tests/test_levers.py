"""The training step's speed levers change no result.

`train.fast_ops` switches two of them: the discriminator scoring real and fake faces in one call,
and InstanceNorm computed through group_norm. The reference for the fast step is the same task's
own step with the switch off, not a copy of it; what "off" takes is checked against torch itself
(every InstanceNorm's output is `F.instance_norm`'s, the discriminator sees the real faces and the
fakes in separate calls). The third lever, StarGAN rendering its fake once per step, is checked by
what it claims: the generator update's losses are those of a fresh rendering by the generator as it
was before the step, and the generator runs once on a critic-only step and twice on a G step.

The fast-against-off comparison runs in float64: in float32 the two paths differ by rounding
(different batch sizes inside a convolution, GroupNorm's reduction order), and Adam's first update,
lr * g / |g|, turns a rounding difference on a near-zero gradient into a full learning-rate step, so
float32 trajectories of equal maths part after a few steps. In float64 the rounding is far below the
tolerances used here.
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fersnet import config
from fersnet.models import blocks, registry
from fersnet.training import batches as B


@contextlib.contextmanager
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def two_step_cfg() -> dict:
    cfg = config.load("params.yaml", "test")
    cfg["stargan"]["n_critic"] = 2            # the second step updates StarGAN's generator too
    return cfg


def built(model: str, cfg: dict, fast_ops: bool):
    torch.manual_seed(0)
    task = registry.build(model, cfg, 6, 1).train()
    task.set_fast_ops(fast_ops)
    return task


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
def test_fast_step_gives_the_losses_and_weights_of_the_step_with_fast_ops_off(model):
    cfg = two_step_cfg()
    with float64():
        fast, off = built(model, cfg, True), built(model, cfg, False)
        assert fast.batched_disc and not off.batched_disc
        for batch in two_batches(cfg):
            torch.manual_seed(1 + batch["step"])
            got = fast.train_step(dict(batch))
            torch.manual_seed(1 + batch["step"])
            want = off.train_step(dict(batch))
            assert set(want) == set(got)
            for k in want:
                torch.testing.assert_close(got[k].double(), want[k].double(), rtol=1e-6, atol=1e-12,
                                           msg=lambda m, k=k: f"step {batch['step']} {k}: {m}")
    assert "G/loss" in got                    # the generator was updated on the last step
    a, b = fast.state_dict(), off.state_dict()
    assert list(a) == list(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-10, msg=lambda m, k=k: f"{k}: {m}")
    # the update moved the weights (the comparison above is not between two untouched networks)
    torch.manual_seed(0)
    fresh = registry.build(model, cfg, 6, 1).state_dict()
    assert any(not torch.equal(fresh[k].double(), a[k]) for k in a if k.startswith("gen."))


@pytest.mark.parametrize("model", ["fersnet", "stargan"])
def test_fast_ops_off_is_torchs_instance_norm_and_separate_discriminator_calls_in_float32(model):
    # train.fast_ops: no (the CPU default) takes the straightforward float32 path: every InstanceNorm
    # gives exactly what torch's instance_norm gives, and real and fake faces go through the
    # discriminator in calls of their own; with the switch on, one call takes both
    cfg = two_step_cfg()
    off, fast = built(model, cfg, False), built(model, cfg, True)
    norms = [m for m in off.modules() if isinstance(m, blocks.InstanceNorm2d)]
    assert norms and not any(m.via_group_norm for m in norms)
    checked = []

    def same_as_torch(m, args, out):
        want = F.instance_norm(args[0], None, None, m.weight, m.bias, True, m.momentum or 0.0, m.eps)
        checked.append(bool(torch.equal(out, want)))

    hooks = [m.register_forward_hook(same_as_torch) for m in norms]
    sizes = {"off": [], "fast": []}
    for name, task in (("off", off), ("fast", fast)):
        hooks.append(task.disc.register_forward_pre_hook(lambda m, args, name=name: sizes[name].append(len(args[0]))))
    try:
        batches = two_batches(cfg, dtype=torch.float32)
        for batch in batches:
            torch.manual_seed(1 + batch["step"])
            got = off.train_step(dict(batch))
            torch.manual_seed(1 + batch["step"])
            fast.train_step(dict(batch))
    finally:
        for h in hooks:
            h.remove()
    assert "G/loss" in got and checked and all(checked)
    bs = len(batches[0]["x"])
    assert set(sizes["off"]) == {bs}                           # never real and fake in one call
    assert 2 * bs in sizes["fast"]
    # the fast path rounds differently in float32: the two paths are told apart after two steps
    a, c = off.state_dict(), fast.state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_stargan_renders_its_fake_once_and_updates_the_generator_as_with_a_fresh_rendering():
    cfg = two_step_cfg()
    with float64():
        task = built("stargan", cfg, False)
        calls = []
        hook = task.gen.register_forward_pre_hook(lambda m, args: calls.append(len(args[0])))
        d_step, g_step = two_batches(cfg)
        torch.manual_seed(1)
        task.train_step(dict(d_step))
        assert len(calls) == 1                                 # a critic-only step renders the fake once
        before = copy.deepcopy(task.gen)
        torch.manual_seed(2)
        got = task.train_step(dict(g_step))
        assert len(calls) == 3                                 # a G step: the fake once, then its reconstruction
        hook.remove()
        # StarGAN's generator losses on a fresh rendering by the generator as it was before the step,
        # scored by the critic after its own update (the generator's update leaves the critic as it is)
        x, s, t = g_step["x"], g_step["s"], g_step["t"]
        with torch.no_grad():
            fake = before(x, task.onehot(t))
            src, cls = task.disc(fake)
            rec = before(fake, task.onehot(s))
        want = {"G/loss_fake": -src.mean(), "G/loss_cls": F.cross_entropy(cls, t),
                "G/loss_rec": ((2 * x - 1) - (2 * rec - 1)).abs().mean()}     # L1 on [-1, 1] images
        for k, v in want.items():                              # the step reports its losses in float32
            torch.testing.assert_close(got[k].double(), v.double(), rtol=1e-6, atol=1e-9, msg=k)
        assert any(not torch.equal(p, q) for p, q in zip(before.parameters(), task.gen.parameters()))


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
