"""A model = networks + their losses + their optimizers, behind one interface the training loop drives.

`train_step(batch) -> dict` of detached scalar tensors with namespaced keys (`D/loss`,
`G/loss_adv`, `C/loss_ce`, `gate/...`), as StarGAN's solver names them. The step runs in
numbered phases: 1. forward the generator, 2. train D, 3. train G + C.

batch (fersnet/training/batches.py): x (B,C,h,w) source faces in [0,1], s source labels,
xt the same subject's real face of the target expression (where one exists), t target labels,
has_t (B,) bool, step (global step number).

An external model subclasses Task and writes train_step, classify and/or synthesize
(docs/extending.md: the interface, what a checkpoint holds, the checks before a run).
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fersnet.errors import FersnetError
from fersnet.models.blocks import set_fast_ops
from fersnet.models.fersnet import build_discriminator, build_generator
from fersnet.models.registry import expression_weight


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def adam(params, lr: float, betas, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with L2 weight decay (R2021: Adam lr 1e-4, betas (0.5, 0.999), wd 5e-4)."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


class Task(nn.Module):
    """Base: networks as submodules, optimizers in `self.optimizers`, autocast set by the loop."""

    has_classifier = True

    def __init__(self, n_classes: int):
        super().__init__()
        self.n_classes = n_classes
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.autocast = contextlib.nullcontext

    def onehot(self, labels: torch.Tensor) -> torch.Tensor:
        """One-hot rows in torch's default float dtype (float32 unless a float64 check sets it)."""
        return F.one_hot(labels, self.n_classes).to(torch.get_default_dtype())

    def set_lr_factor(self, factor: float) -> None:
        """Scale every optimizer's base learning rate by the schedule's factor for the epoch (loop.lr_schedule_factor)."""
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group.setdefault("base_lr", group["lr"])
                group["lr"] = group["base_lr"] * factor

    # one discriminator call on real and fake together (set_fast_ops)
    batched_disc = True

    def set_fast_ops(self, on: bool) -> None:
        """`train.fast_ops`: InstanceNorm through group_norm and the discriminator called once on
        real and fake together (on), or nn.InstanceNorm2d's kernel and one discriminator call
        each (off, the float32 path of the authors' code and of this project's first versions).
        The same maths either way (tests/test_levers.py checks it in float64); float32 rounds
        differently, so a run's results depend on the choice (docs/performance.md)."""
        self.batched_disc = bool(on)
        set_fast_ops(self, on)

    def use_fused_adam(self) -> None:
        """Rebuild every optimizer as fused Adam (one kernel per step for all parameters).

        Call before any optimizer state exists (train.py does, right after moving to the device,
        before resuming); hyper-parameters are kept per parameter group.
        """
        for name, opt in self.optimizers.items():
            if any(opt.state.values()):
                raise RuntimeError("use_fused_adam: the optimizers already have state")
            groups = [{k: v for k, v in g.items() if k not in ("fused", "foreach")} for g in opt.param_groups]
            self.optimizers[name] = torch.optim.Adam(groups, fused=True)

    # networks whose forward runs in every step and may be torch.compile'd (see compile_networks)
    compile_targets: tuple[str, ...] = ("gen", "disc")

    def compile_networks(self, backend: str = "inductor") -> list[str]:
        """torch.compile the per-step networks in place (`nn.Module.compile`: state_dict keys and
        checkpoints are unchanged). Compilation happens lazily at the first call; the caller sets
        dynamo's `suppress_errors` so that a graph that fails to compile runs eagerly instead."""
        for name in self.compile_targets:
            getattr(self, name).compile(backend=backend)
        return list(self.compile_targets)

    def current_lr(self) -> float:
        opt = next(iter(self.optimizers.values()))
        return float(opt.param_groups[0]["lr"])

    @torch.no_grad()
    def classify(self, x):
        """Logits of real faces, or None for a model without a FER branch."""
        return self.gen.classify(x)

    @torch.no_grad()
    def synthesize(self, x, target):
        """Faces x rendered with target labels (B,) -> images in [0, 1]."""
        return self.gen.synthesize(x, self.onehot(target))

    def gate_means(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.gen.gate_means().items()}


class FersnetTask(Task):
    """fersnet, no_convflu and no_mtl: LSGAN + paired L1 + cycle + FER cross-entropy (+ expression, identity)."""

    def __init__(self, model_key: str, cfg: dict, n_classes: int, channels: int):
        super().__init__(n_classes)
        tr = cfg["train"]
        self.gen = build_generator(model_key, cfg, n_classes, channels)
        self.disc = build_discriminator(cfg, n_classes, channels)
        self.lam = {k: tr[f"lambda_{k}"] for k in ("cls", "adv", "l1", "cyc", "id")}
        # 0 for no_mtl: the single-task generator gets no signal from the FER network (docs/models.md)
        self.lam["expr"] = expression_weight(model_key, cfg)
        self.d_steps = tr["d_steps"]
        self.identity_net = None
        if self.lam["id"] > 0:
            self.identity_net = load_identity_net(tr["identity_net"])
        self.optimizers = {
            "G": adam(self.gen.parameters(), tr["lr"], tr["betas"], tr["weight_decay"]),
            "D": adam(self.disc.parameters(), tr["lr"], tr["betas"], tr["weight_decay"]),
        }

    def train_step(self, batch: dict) -> dict:
        x, s, xt, t, has_t = batch["x"], batch["s"], batch["xt"], batch["t"], batch["has_t"]
        oh_s, oh_t = self.onehot(s), self.onehot(t)
        out = {}

        # 1. Forward the generator once; the fake serves both the D and the G update.
        with self.autocast():
            logits, fake = self.gen(x, oh_t)
        out.update({f"gate/{k}": v for k, v in self.gen.gate_means().items()})

        # 2. Train D (LSGAN, R2021): real = the subject's real target face where one exists.
        set_requires_grad(self.disc, True)
        real = torch.where(has_t[:, None, None, None], xt, x)
        real_oh = torch.where(has_t[:, None], oh_t, oh_s)
        # with fast ops, real and fake through D as one batch: every layer of the PatchGAN works
        # per sample (convolutions, InstanceNorm, LeakyReLU), so the scores are those of two
        # separate calls, at half the operator calls, rounded otherwise in float32
        fake_d, n = fake.detach(), len(x)
        both = (torch.cat([real, fake_d]), torch.cat([real_oh, oh_t])) if self.batched_disc else None
        for _ in range(self.d_steps):
            with self.autocast():
                if both is not None:
                    d_real, d_fake = self.disc(*both).float().split(n)
                else:
                    d_real, d_fake = self.disc(real, real_oh).float(), self.disc(fake_d, oh_t).float()
            loss_real = F.mse_loss(d_real, torch.ones_like(d_real))
            loss_fake = F.mse_loss(d_fake, torch.zeros_like(d_fake))
            loss_d = 0.5 * (loss_real + loss_fake)
            self.optimizers["D"].zero_grad(set_to_none=True)
            loss_d.backward()
            self.optimizers["D"].step()
        out.update({"D/loss_real": loss_real.detach(), "D/loss_fake": loss_fake.detach(), "D/loss": loss_d.detach()})

        # 3. Train G + C.
        set_requires_grad(self.disc, False)
        with self.autocast():
            score = self.disc(fake, oh_t).float()
            # cycle pass: back to the source expression; it also gives the FER logits of the fake
            logits_fake, rec = None, None
            if self.lam["expr"] > 0:
                logits_fake, rec = self.gen(fake, oh_s)
            elif self.lam["cyc"] > 0:
                rec = self.gen.synthesize(fake, oh_s)
        # the expression loss differentiates w.r.t. the fake the cycle pass read (bf16 under autocast)
        logits, fake_seen, fake = logits.float(), fake, fake.float()
        loss_ce = F.cross_entropy(logits, s)
        loss_adv = F.mse_loss(score, torch.ones_like(score))
        per_item = (fake - xt).abs().mean(dim=(1, 2, 3))
        loss_l1 = (per_item * has_t).sum() / has_t.sum().clamp(min=1)
        total = self.lam["cls"] * loss_ce + self.lam["adv"] * loss_adv + self.lam["l1"] * loss_l1
        out.update({"C/loss_ce": loss_ce.detach(), "G/loss_adv": loss_adv.detach(),
                    "G/loss_l1": loss_l1.detach()})
        if rec is not None:
            loss_cyc = F.mse_loss(rec.float(), x)      # R2021: MSE back to the source face
            total = total + self.lam["cyc"] * loss_cyc
            out["G/loss_cyc"] = loss_cyc.detach()
        if logits_fake is not None:
            loss_expr = F.cross_entropy(logits_fake.float(), t)
            total = total + self.lam["expr"] * expression_surrogate(loss_expr, fake_seen)
            out["G/loss_expr"] = loss_expr.detach()
        if self.identity_net is not None:
            loss_id = identity_loss(self.identity_net, fake, xt, has_t)
            total = total + self.lam["id"] * loss_id
            out["G/loss_id"] = loss_id.detach()
        self.optimizers["G"].zero_grad(set_to_none=True)
        total.backward()
        self.optimizers["G"].step()
        out["G/loss"] = total.detach()
        out["train_acc"] = (logits.detach().argmax(1) == s).float().mean()
        return out


class FerFinetuneTask(Task):
    """FES-DA's second stage: cross-entropy on the FER side of a trained FERSNet; the FES side stays frozen."""

    def __init__(self, gen: nn.Module, cfg: dict, n_classes: int):
        super().__init__(n_classes)
        self.gen = gen
        fer = gen.fer_parameters()
        fer_ids = {id(p) for p in fer}
        for p in gen.parameters():
            p.requires_grad_(id(p) in fer_ids)
        self.optimizers = {"C": adam(fer, cfg["fes_da"]["lr"], cfg["train"]["betas"], cfg["train"]["weight_decay"])}

    def train_step(self, batch: dict) -> dict:
        x, s = batch["x"], batch["s"]
        with self.autocast():
            logits = self.gen.classify(x).float()
        loss = F.cross_entropy(logits, s)
        self.optimizers["C"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["C"].step()
        out = {f"gate/{k}": v for k, v in self.gen.gate_means().items()}
        out.update({"C/loss_ce": loss.detach(), "train_acc": (logits.detach().argmax(1) == s).float().mean()})
        return out


def expression_surrogate(loss_expr: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """A term whose gradient is that of loss_expr, but reaching only the fake image.

    If the expression loss also trained the classifier side, generator and classifier collude:
    the generator writes a fixed code (we saw a dark blob by one eye on every face) that the FER
    branch learns to read as the target. Through the fake only, the classifier and the FER
    branch's level 4 get none of its gradient (they learn from real faces only, as StarGAN's
    classifier); the FER levels 1-3 feed the FES side through the ConvFLUs, so they are part of
    the generator and do get it, as from every synthesis loss (docs/models.md, tests/test_claims.py).
    """
    (grad,) = torch.autograd.grad(loss_expr, fake, retain_graph=True)
    term = (fake.float() * grad.detach().float()).sum()
    return term - term.detach() + loss_expr.detach()     # value of loss_expr, gradient via fake only


def load_identity_net(path: str | None) -> nn.Module:
    """A user-supplied TorchScript face-embedding network (R2021 used LightCNN-9 features), frozen."""
    if not path:
        raise FersnetError("params: `train.lambda_id` > 0 needs `train.identity_net` (a TorchScript file)")
    if not Path(path).is_file():
        raise FersnetError(f"{path}: `train.identity_net` file not found")
    try:
        with warnings.catch_warnings():     # torch >= 2.9 marks TorchScript deprecated; still loads
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any load failure is a user-facing file problem
        raise FersnetError(f"{path}: cannot load `train.identity_net` as TorchScript ({e})") from None
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def identity_loss(net: nn.Module, fake, real, mask) -> torch.Tensor:
    """MSE between embedding features of the synthesized and the real target face (where paired)."""
    net.to(fake.device)
    diff = (net(fake).float() - net(real).float()).pow(2).flatten(1).mean(1)
    return (diff * mask).sum() / mask.sum().clamp(min=1)
