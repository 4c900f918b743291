"""Would training several folds in one process, as one grouped network, make the convolutions cheaper?

Convolutions (forward and backward) are 55-65 % of a demo training step (`profile_step.py`).
Their shapes are small (4-64 channels, 32 px or less, batch 16), so a tempting lever is "fewer,
larger convolutions": stack F folds' networks into one, where every convolution becomes one
call with `groups=F` (what `torch.func.vmap` over stacked fold parameters does with a
convolution). This bench measures that lever's upper bound before anyone builds it:

1. one period of training steps of each model (one step; StarGAN: n_critic steps, one of them
   with the G update) runs with hooks on every Conv2d / ConvTranspose2d, which
   record each call's input shape and layer;
2. for every recorded call, forward + backward is timed (a) F times as F separate convolutions,
   one per fold, and (b) once as a single grouped convolution over the F folds' stacked inputs
   and weights;
3. the ratio (b) / (a) summed over a step's calls is what grouping could do for the
   convolutions; the whole step cannot gain more than that times the convolutions' share;
4. and, for one fold, each call with oneDNN (torch's CPU default) against ATen's native
   convolution (`torch.backends.mkldnn` off): what choosing the faster of the two per layer would save;
5. a bound for the whole step, norms and element-wise operators included: one training step at
   F times the batch against F steps at the batch (the same network): stacking F folds can at best
   turn F small steps into one step of F times the work.

    .venv/bin/python bench/conv_grouping.py --profile demo --folds 10 --out bench/results/conv_grouping_cpu_demo.json

Median CPU milliseconds over rounds that alternate (a) and (b); 1 torch thread (the demo's
`train.threads`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import save  # noqa: E402
from train_step import MODELS, task_and_batches  # noqa: E402

from fersnet import config  # noqa: E402


def period(cfg: dict, model: str) -> int:
    """Steps after which a model's step pattern repeats: StarGAN updates G every n_critic steps."""
    return cfg["stargan"]["n_critic"] if model == "stargan" else 1


def record_convs(cfg: dict, model: str, seed: int) -> list[dict]:
    """The convolution calls of one period of training steps (StarGAN: n_critic steps, one with G)."""
    task, batches = task_and_batches(cfg, model, cfg["train"]["batch_size"], period(cfg, model) + 2, seed)
    calls: list[dict] = []

    def hook(mod, inputs, _out):
        calls.append({"transposed": isinstance(mod, nn.ConvTranspose2d), "in_shape": tuple(inputs[0].shape),
                      "weight_shape": tuple(mod.weight.shape), "stride": mod.stride, "padding": mod.padding,
                      "output_padding": getattr(mod, "output_padding", (0, 0)), "groups": mod.groups,
                      "bias": mod.bias is not None, "needs_input_grad": inputs[0].requires_grad})

    handles = [m.register_forward_hook(hook) for m in task.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    for i in range(period(cfg, model)):
        b = next(batches)
        b["step"] = i
        task.train_step(b)
    for h in handles:
        h.remove()
    return calls


# torch.backends.mkldnn.flags() warns about Intel GPUs' TF32 on every use: not this bench's concern
warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")


def conv(c: dict, x, w, b, groups: int):
    if c["transposed"]:
        return torch.nn.functional.conv_transpose2d(x, w, b, c["stride"], c["padding"], c["output_padding"], groups)
    return torch.nn.functional.conv2d(x, w, b, c["stride"], c["padding"], 1, groups)


def tensors(c: dict, folds: int, gen: torch.Generator):
    """F folds' inputs and weights, separate and stacked for one grouped call (same values)."""
    n, cin, h, w = c["in_shape"]
    ws = c["weight_shape"]                        # Conv2d: (out, in, k, k); ConvTranspose2d: (in, out, k, k)
    xs = [torch.randn(n, cin, h, w, generator=gen) for _ in range(folds)]
    wts = [torch.randn(*ws, generator=gen) * 0.1 for _ in range(folds)]
    n_out = ws[1] if c["transposed"] else ws[0]
    bs = [torch.randn(n_out, generator=gen) for _ in range(folds)] if c["bias"] else [None] * folds
    for t in xs:
        t.requires_grad_(c["needs_input_grad"])
    for t in wts + [t for t in bs if t is not None]:
        t.requires_grad_(True)
    X = torch.cat([x.detach() for x in xs], 1).requires_grad_(c["needs_input_grad"])
    W = torch.cat([w.detach() for w in wts], 0).requires_grad_(True)
    Bi = torch.cat([b.detach() for b in bs], 0).requires_grad_(True) if c["bias"] else None
    return xs, wts, bs, X, W, Bi


def time_call(c: dict, folds: int, rounds: int, gen: torch.Generator) -> dict:
    xs, wts, bs, X, W, Bi = tensors(c, folds, gen)
    gy = [torch.randn_like(conv(c, x, w, b, c["groups"]).detach()) for x, w, b in zip(xs, wts, bs)]
    GY = torch.cat(gy, 1)

    def separate():
        for x, w, b, g in zip(xs, wts, bs, gy):
            conv(c, x, w, b, c["groups"]).backward(g)

    def grouped():
        conv(c, X, W, Bi, c["groups"] * folds).backward(GY)

    for _ in range(2):
        separate()
        grouped()
    a, g = [], []
    for _ in range(rounds):
        t = time.process_time(); separate(); a.append(time.process_time() - t)
        t = time.process_time(); grouped(); g.append(time.process_time() - t)
    # one fold's call with oneDNN (torch's CPU default) and with ATen's native convolution
    one = lambda: conv(c, xs[0], wts[0], bs[0], c["groups"]).backward(gy[0])  # noqa: E731
    o, nat = [], []
    for _ in range(rounds):
        t = time.process_time(); one(); o.append(time.process_time() - t)
        with torch.backends.mkldnn.flags(enabled=False):
            one()                                 # warm
            t = time.process_time(); one(); nat.append(time.process_time() - t)
    # the grouped call computes the same convolutions: check it (float32 rounding only)
    ys = torch.cat([conv(c, x, w, b, c["groups"]).detach() for x, w, b in zip(xs, wts, bs)], 1)
    Y = conv(c, X, W, Bi, c["groups"] * folds).detach()
    return {"separate_ms": statistics.median(a) * 1e3, "grouped_ms": statistics.median(g) * 1e3,
            "onednn_ms": statistics.median(o) * 1e3, "native_ms": statistics.median(nat) * 1e3,
            "max_abs_diff": float((ys - Y).abs().max())}


def step_ms(cfg: dict, model: str, batch_size: int, periods: int, seed: int) -> float:
    """CPU ms of one training step at `batch_size`: median over periods (after one warm-up period)."""
    p = period(cfg, model)
    task, batches = task_and_batches(cfg, model, batch_size, p * (periods + 1) + 2, seed)
    sums = []
    for k in range(periods + 1):
        t = time.process_time()
        for i in range(p):
            b = next(batches)
            b["step"] = k * p + i
            task.train_step(b)
        sums.append(time.process_time() - t)
    return statistics.median(sums[1:]) / p * 1e3


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--folds", type=int, default=10, help="folds stacked into one grouped network")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--periods", type=int, default=5,
                    help="timed periods of steps for the whole-step bound (item 4; a period is one step, StarGAN's n_critic)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = config.load(a.params, a.profile)
    gen = torch.Generator().manual_seed(a.seed)
    rows = []
    for m in a.models:
        calls = record_convs(cfg, m, a.seed)
        timed = [dict(c, **time_call(c, a.folds, a.rounds, gen)) for c in calls]
        p = period(cfg, m)                                                 # sums over a period -> per step
        sep = sum(t["separate_ms"] for t in timed) / p
        grp = sum(t["grouped_ms"] for t in timed) / p
        onednn = sum(t["onednn_ms"] for t in timed) / p
        best = sum(min(t["onednn_ms"], t["native_ms"]) for t in timed) / p
        bs = cfg["train"]["batch_size"]
        one, big = step_ms(cfg, m, bs, a.periods, a.seed), step_ms(cfg, m, bs * a.folds, a.periods, a.seed)
        row = {"model": m, "conv_calls_per_step": len(calls) / p, "separate_ms": sep, "grouped_ms": grp,
               "grouped_over_separate": grp / sep, "max_abs_diff": max(t["max_abs_diff"] for t in timed),
               "onednn_ms": onednn, "native_ms": sum(t["native_ms"] for t in timed) / p,
               "best_backend_per_call_over_onednn": best / onednn,
               "step_ms": one, "step_ms_folds_times_batch": big, "whole_step_bound": big / (a.folds * one),
               "calls": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in t.items()} for t in timed]}
        print(json.dumps({k: row[k] for k in ("model", "conv_calls_per_step", "separate_ms", "grouped_ms",
                                              "grouped_over_separate", "max_abs_diff", "onednn_ms", "native_ms",
                                              "best_backend_per_call_over_onednn", "step_ms",
                                              "step_ms_folds_times_batch", "whole_step_bound")}), flush=True)
        rows.append(row)
    out = {"bench": "conv_grouping", "profile": a.profile, "folds": a.folds, "rounds": a.rounds, "periods": a.periods,
           "threads": a.threads, "torch": torch.__version__, "results": rows}
    if a.out:
        save(a.out, f"bench/conv_grouping.py: CPU ms of a training step's convolutions, {a.folds} folds as separate "
                    f"calls against one grouped call, and the whole-step bound ({a.profile} profile)", out)
    return out


if __name__ == "__main__":
    main()
