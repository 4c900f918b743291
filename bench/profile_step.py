"""Where a training step's time goes: torch.profiler over steps of each model and of the judge.

For every model (and the judge), after warm-up, a few full training steps run under
torch.profiler; the result lists the operators with the most self CPU time and splits the
step into forward (and loss), backward and optimizer time (top-level profiler events:
autograd's backward functions, `Optimizer.step` / `zero_grad`, everything else).

    .venv/bin/python bench/profile_step.py --profile demo --out bench/results/profile_step_cpu_demo.json

Times are CPU times of this machine; compare shares, not absolute values, across machines.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import save  # noqa: E402
from train_step import MODELS, task_and_batches  # noqa: E402

from fersnet import config  # noqa: E402


def phase(name: str) -> str:
    if name.startswith("autograd::engine::evaluate_function") or "Backward" in name:
        return "backward"
    if name.startswith("Optimizer."):
        return "optimizer"
    return "forward"


def summarize(prof, steps: int, top: int) -> dict:
    """Top operators by self CPU time, and the forward / backward / optimizer split (ms per step)."""
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total_self = sum(e.self_cpu_time_total for e in ops) or 1.0
    top_ops = [{"op": e.key, "self_cpu_ms_per_step": e.self_cpu_time_total / 1000 / steps,
                "share": e.self_cpu_time_total / total_self, "calls_per_step": e.count / steps}
               for e in ops[:top]]
    split = defaultdict(float)
    for ev in prof.events():
        if ev.cpu_parent is None:                  # top-level events only: no double counting
            split[phase(ev.name)] += ev.cpu_time_total
    total = sum(split.values()) or 1.0
    return {"step_cpu_ms": total / 1000 / steps,
            "split_ms_per_step": {k: v / 1000 / steps for k, v in sorted(split.items())},
            "split_share": {k: v / total for k, v in sorted(split.items())},
            "top_ops": top_ops}


def profile_model(cfg: dict, model: str, warmup: int, steps: int, top: int, seed: int) -> dict:
    bs, crop = cfg["train"]["batch_size"], cfg["train"]["crop"]
    task, batches = task_and_batches(cfg, model, bs, warmup + steps + 2, seed)
    for i in range(warmup):
        b = next(batches)
        b["step"] = i
        task.train_step(b)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            b = next(batches)
            b["step"] = warmup + i                  # StarGAN: G every n_critic steps
            task.train_step(b)
    return {"model": model, "batch_size": bs, "crop": crop, **summarize(prof, steps, top)}


def profile_judge(cfg: dict, warmup: int, steps: int, top: int, seed: int) -> dict:
    """One optimisation step of the judge (ResNet-18 at judge.width) as fersnet.metrics.judge trains it."""
    from fersnet.metrics.judge import build_judge
    torch.manual_seed(seed)
    crop, bs = cfg["train"]["crop"], cfg["judge"]["batch_size"]
    net = build_judge(1, 6, cfg["judge"]["width"])
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg["judge"]["lr"], weight_decay=cfg["judge"]["weight_decay"])
    x, y = torch.rand(bs, 1, crop, crop), torch.randint(0, 6, (bs,))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return {"model": "judge", "batch_size": bs, "crop": crop, **summarize(prof, steps, top)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--models", nargs="+", default=list(MODELS) + ["judge"])
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the demo's train.threads)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = config.load(a.params, a.profile)
    rows = []
    for m in a.models:
        r = (profile_judge(cfg, a.warmup, a.steps, a.top, a.seed) if m == "judge"
             else profile_model(cfg, m, a.warmup, a.steps, a.top, a.seed))
        print(json.dumps({k: r[k] for k in ("model", "step_cpu_ms", "split_share")}), flush=True)
        rows.append(r)
    out = {"bench": "profile_step", "profile": a.profile, "threads": a.threads, "steps": a.steps, "results": rows}
    if a.out:
        save(a.out, f"bench/profile_step.py: where a training step's CPU time goes per model, forward / backward / "
                    f"optimizer and the top operators ({a.profile} profile)", out)
    return out


if __name__ == "__main__":
    main()
