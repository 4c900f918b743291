"""StarGAN's gradient penalty and reconstruction loss are those of its paper, on [-1, 1] images.

The references below are written from the equations of Choi et al. (CVPR 2018), not from the code
under test: the networks see images in [-1, 1] (the generator ends in tanh),
    L_gp  = E_x^[(||grad_x^ D_src(x^)||_2 - 1)^2], x^ uniform on the line between a real and a fake,
    L_rec = E_x,c,c'[||x - G(G(x, c), c')||_1]   (averaged over pixels, as lambda_rec = 10 assumes).
D_src is a patch map; its gradient is that of the sum of its scores. fersnet hands the networks
[0, 1] images, so the references reach D only through its public [0, 1] interface (D((z + 1) / 2)
for an image z in [-1, 1]) and take the derivative with respect to z by autograd.
"""
from __future__ import annotations

import copy

import pytest
import torch

from fersnet import config
from fersnet.models import registry


def paper_gradient_penalty(disc, real01, fake01, alpha):
    real, fake = 2 * real01 - 1, 2 * fake01 - 1                    # the networks' domain
    x_hat = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    d_src = disc((x_hat + 1) / 2)[0]
    (grad,) = torch.autograd.grad(d_src.sum(), x_hat)
    norms = torch.sqrt((grad ** 2).sum(dim=(1, 2, 3)))
    return torch.mean((norms - 1) ** 2)


def paper_reconstruction(x01, rec01):
    x, rec = 2 * x01 - 1, 2 * rec01 - 1
    return torch.mean(torch.abs(x - rec))


def unit_range_penalty(disc, real01, fake01, alpha):
    """The penalty taken on [0, 1] images instead (what the test must tell apart)."""
    x_hat = (alpha * real01 + (1 - alpha) * fake01).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(x_hat)[0].sum(), x_hat)
    return torch.mean((torch.sqrt((grad ** 2).sum(dim=(1, 2, 3))) - 1) ** 2)


@pytest.fixture
def task():
    """The test profile's StarGAN in float64 (default dtype float64 while the test runs, so that
    one-hot targets and random draws are float64 too)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        cfg = config.load("params.yaml", "test")
        torch.manual_seed(0)
        yield registry.build("stargan", cfg, 6, 1).train()
    finally:
        torch.set_default_dtype(old)


def _faces(n, crop, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, crop, crop, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gradient_penalty_is_the_papers_on_minus_one_to_one_images(task, seed):
    crop = 20
    real, fake = _faces(5, crop, seed), _faces(5, crop, 100 + seed)
    torch.manual_seed(seed)
    got = task.gradient_penalty(real, fake)
    torch.manual_seed(seed)
    alpha = torch.rand(5, 1, 1, 1)                                  # the same interpolation weights
    want = paper_gradient_penalty(task.disc, real, fake, alpha)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    # the test can tell the scales apart: on [0, 1] the gradient norm is twice as large
    assert not torch.isclose(got, unit_range_penalty(task.disc, real, fake, alpha), rtol=1e-3)


@pytest.mark.parametrize("seed", [1, 2])
def test_reconstruction_loss_is_the_papers_l1_on_minus_one_to_one_images(task, seed):
    x, rec = _faces(4, 20, seed), _faces(4, 20, 50 + seed)
    got = task.reconstruction_loss(x, rec)
    torch.testing.assert_close(got, paper_reconstruction(x, rec), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got, 2 * (x - rec).abs().mean(), rtol=1e-12, atol=1e-14)   # twice the [0, 1] L1


def test_a_training_step_logs_the_papers_penalty_and_reconstruction(task):
    task.n_critic = 1                         # D and G both update on this step
    before = copy.deepcopy(task)              # the networks as the step finds them
    n, crop = 6, 20
    x = _faces(n, crop, 7)
    s, t = torch.tensor([0, 1, 2, 3, 4, 5]), torch.tensor([1, 2, 3, 4, 5, 0])
    with torch.no_grad():
        fake = before.gen(x, before.onehot(t))
        rec = before.gen(fake, before.onehot(s))
    torch.manual_seed(11)
    alpha = torch.rand(n, 1, 1, 1)            # the step's only random draw: the interpolation weights
    want_gp = paper_gradient_penalty(before.disc, x, fake, alpha)
    torch.manual_seed(11)
    out = task.train_step({"x": x, "s": s, "t": t, "step": 0})
    # the step rounds its fake through float32 (`.float()` before the losses): float32 tolerances
    torch.testing.assert_close(out["D/loss_gp"], want_gp, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(out["G/loss_rec"], paper_reconstruction(x, rec), rtol=1e-6, atol=1e-9)
    lam = config.load("params.yaml", "test")["stargan"]
    assert (lam["lambda_gp"], lam["lambda_rec"]) == (10.0, 10.0)    # the paper's weights, on its scale
