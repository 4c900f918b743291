"""Training-speed levers on one device, each timed against a reference in the same process, paired.

Every lever is a pair of tasks built from the same seed and fed the same batches in the same
order: A (the reference) and B (the lever). They run in alternating blocks of steps (A B, B A,
A B, ...) so that the speed drift of a shared machine hits both alike; the result per lever is
the median seconds per step of each and the median of the per-round ratios B/A, of wall seconds and of CPU seconds of this process (on a
shared machine the CPU seconds are the steadier measure of the work; for `threads2` only the wall
time means anything).

Levers (`--levers`):
  exact          A = the task as it was at `--ref` (a git commit, loaded from `git archive` into
                 a package of its own), B = the current task: the exact step changes together
  foreach_adam   A = current, B = current with Adam(foreach=True)
  fused_adam     A = current, B = current with Adam(fused=True) (`train.fused_adam: yes`)
  threads2       A = current at 1 torch thread, B = the same at 2 (a lone job on a 2-core machine)
  channels_last  A = current, B = current with the networks in channels-last memory format
  mkldnn_off     A = current, B = current under torch.backends.mkldnn.flags(enabled=False)
  matmul_medium  A = current, B = current under torch.set_float32_matmul_precision("medium")
  bf16_cpu       A = current, B = current under CPU autocast to bfloat16 (oneDNN's AMX / AVX-512
                 bf16 kernels where the CPU has them); not exact: the losses part at once
  flush_denormal A = current, B = current under torch.set_flush_denormal(True) (subnormal floats
                 read and written as zero: slow subnormal arithmetic avoided; not exact)
  fast_ops       A = `train.fast_ops` off (InstanceNorm through nn.InstanceNorm2d's kernel, the
                 discriminator called once for real and once for fake: the CPU default), B = on
                 (group_norm, one discriminator call for both); not exact in float32
  compile        A = current eager, B = current with `train.compile: yes` (inductor): the first
                 step (compilation) apart, then steady steps; a second fold in the same process
                 (new networks, same shapes); and a new process on the same on-disk cache
                 (`--compile-probe` sub-processes: a cold cache, then a warm one)

After each pair the losses of the last step and the largest relative parameter difference of A
and B are recorded (exact levers drift apart only by float rounding).

    .venv/bin/python bench/levers.py --out bench/results/levers_cpu_demo.json
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from record import save  # noqa: E402
from train_step import synthetic_arrays  # noqa: E402

from fersnet import catalog, config  # noqa: E402
from fersnet.models import registry  # noqa: E402
from fersnet.training import batches as B  # noqa: E402

MODELS = tuple(catalog.generators())
LEVERS = ("exact", "foreach_adam", "fused_adam", "threads2", "channels_last", "mkldnn_off", "matmul_medium",
          "bf16_cpu", "flush_denormal", "fast_ops", "compile")


def ref_registry(ref: str):
    """`fersnet.models` as of git commit `ref`, importable next to the current one.

    The folder is extracted with `git archive` into a temporary package named after the commit,
    its `fersnet.models.` imports pointed at that package (everything else, e.g. fersnet.errors,
    is the current one)."""
    sha = subprocess.run(["git", "rev-parse", "--short=12", ref], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    name = f"fersnet_models_{sha}"
    if name in sys.modules:
        return importlib.import_module(f"{name}.registry"), sha
    tar = subprocess.run(["git", "archive", sha, "fersnet/models"], cwd=ROOT, capture_output=True, check=True).stdout
    tmp = Path(tempfile.mkdtemp(prefix="fersnet-ref-"))
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(tmp, filter="data")
    pkg = tmp / name
    (tmp / "fersnet" / "models").rename(pkg)
    for f in pkg.glob("*.py"):
        f.write_text(f.read_text().replace("fersnet.models.", f"{name}."))
    sys.path.insert(0, str(tmp))
    return importlib.import_module(f"{name}.registry"), sha


class Feed:
    """The same endless sequence of batches for every task: batch i of a fixed pool, step i."""

    def __init__(self, cfg: dict, seed: int, pool: int = 24):
        tr, self.n_classes, self.channels = cfg["train"], 6, 1
        size, crop, bs = cfg["preprocess"]["size"], tr["crop"], tr["batch_size"]
        n_subjects = 4
        per_subject = max(6, bs * pool // n_subjects + 1)
        images, labels, subjects = synthetic_arrays(n_subjects, per_subject, size, 1, 6, seed)
        data = B.DeviceData.from_arrays(images, labels, subjects, "cpu")
        pairs = B.PairIndex.build(data, np.arange(len(images)))
        gen = torch.Generator().manual_seed(seed)
        batcher = B.DeviceBatcher(data, crop, bs)
        self.pool = []
        while len(self.pool) < pool:
            self.pool += list(batcher.batches(B.make_plan(pairs, data.labels_cpu, 6, size, crop, gen)))
        self.pool = self.pool[:pool]

    def batch(self, i: int) -> dict:
        b = dict(self.pool[i % len(self.pool)])
        b["step"] = i
        return b


class Runner:
    """A task fed by a Feed; `block(n)` runs its next n steps (in `ctx`) and returns seconds per step."""

    def __init__(self, task, feed: Feed, ctx=contextlib.nullcontext, threads: int = 1):
        self.task, self.feed, self.ctx, self.threads, self.i, self.last = task, feed, ctx, threads, 0, {}
        task.train()

    def block(self, n: int) -> float:
        """Wall seconds per step; CPU seconds per step (this process, all threads) in self.cpu."""
        torch.set_num_threads(self.threads)
        with self.ctx():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                self.last = self.task.train_step(self.feed.batch(self.i))
                self.i += 1
            dt, self.cpu = (time.perf_counter() - t0) / n, (time.process_time() - c0) / n
        torch.set_num_threads(1)
        return dt


def paired(a: Runner, b: Runner, rounds: int, block: int, warmup: int = 1) -> dict:
    """Alternating blocks (A B, B A, ...): medians of s/step and the median of per-round ratios B/A."""
    for _ in range(warmup):
        a.block(block)
        b.block(block)
    ta, tb, ca, cb = [], [], [], []
    for r in range(rounds):
        for run, t, c in ((a, ta, ca), (b, tb, cb)) if r % 2 == 0 else ((b, tb, cb), (a, ta, ca)):
            t.append(run.block(block))
            c.append(run.cpu)
    ratios = [y / x for x, y in zip(ta, tb)]
    cpu_ratios = [y / x for x, y in zip(ca, cb)]
    return {"a_step_ms": 1e3 * statistics.median(ta), "b_step_ms": 1e3 * statistics.median(tb),
            "ratio_b_over_a": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "a_cpu_ms": 1e3 * statistics.median(ca), "b_cpu_ms": 1e3 * statistics.median(cb),
            "cpu_ratio_b_over_a": statistics.median(cpu_ratios),
            "rounds": rounds, "steps_per_block": block}


def agreement(a: Runner, b: Runner) -> dict:
    """How far A and B have drifted apart: the last step's losses and the parameters."""
    common = sorted(set(a.last) & set(b.last))
    loss_rel = max((abs(float(a.last[k]) - float(b.last[k])) / max(abs(float(a.last[k])), 1e-12)
                    for k in common), default=None)
    pa, pb = a.task.state_dict(), b.task.state_dict()
    par_rel = max(float(((pa[k].float() - pb[k].float()).abs().max() / pa[k].float().abs().max().clamp(min=1e-12)))
                  for k in pa if k in pb and pa[k].is_floating_point())
    return {"steps": a.i, "last_step_loss_max_rel_diff": loss_rel, "param_max_rel_diff": par_rel,
            "same_state_dict_keys": sorted(pa) == sorted(pb)}


def build(cfg: dict, model: str, seed: int, reg=registry):
    torch.manual_seed(seed)
    return reg.build(model, cfg, 6, 1)


def rebuild_adam(task, **kw) -> None:
    for name, opt in task.optimizers.items():
        groups = [{k: v for k, v in g.items() if k not in ("fused", "foreach")} for g in opt.param_groups]
        task.optimizers[name] = torch.optim.Adam(groups, **kw)


def steps_per_block(model: str) -> int:
    return 5        # StarGAN updates G every n_critic = 5 steps: a block holds one full cycle


@contextlib.contextmanager
def global_setting(turn_on, restore):
    """A process-wide torch setting on for the block, restored after it (B's blocks only)."""
    turn_on()
    try:
        yield
    finally:
        restore()


def flush_denormal_on() -> None:
    if not torch.set_flush_denormal(True):
        raise SystemExit("levers: this CPU cannot flush subnormals (torch.set_flush_denormal)")


def lever_pair(lever: str, cfg: dict, model: str, feed: Feed, seed: int, ref: str):
    if lever == "exact":
        reg, _ = ref_registry(ref)
        return Runner(build(cfg, model, seed, reg), feed), Runner(build(cfg, model, seed), feed)
    a = Runner(build(cfg, model, seed), feed)
    task = build(cfg, model, seed)
    if lever == "foreach_adam":
        rebuild_adam(task, foreach=True)
    elif lever == "fused_adam":
        task.use_fused_adam()
    elif lever == "threads2":
        return a, Runner(task, feed, threads=2)
    elif lever == "channels_last":
        task.to(memory_format=torch.channels_last)
    elif lever == "mkldnn_off":
        return a, Runner(task, feed, ctx=lambda: torch.backends.mkldnn.flags(enabled=False))
    elif lever == "matmul_medium":
        old = torch.get_float32_matmul_precision()
        return a, Runner(task, feed, ctx=lambda: global_setting(
            lambda: torch.set_float32_matmul_precision("medium"), lambda: torch.set_float32_matmul_precision(old)))
    elif lever == "flush_denormal":
        return a, Runner(task, feed, ctx=lambda: global_setting(flush_denormal_on, lambda: torch.set_flush_denormal(False)))
    elif lever == "fast_ops":
        a.task.set_fast_ops(False)       # A: train.fast_ops off, the CPU default (auto)
        task.set_fast_ops(True)
    elif lever == "bf16_cpu":
        task.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        raise KeyError(lever)
    return a, Runner(task, feed)


# --- torch.compile -------------------------------------------------------------------------

def compile_probe(cfg: dict, model: str, seed: int, folds: int, steps: int, rounds: int) -> dict:
    """In this process: per fold a new compiled task; its first step (compilation included) and,
    for the first fold, steady compiled vs eager steps (paired). Inductor's cache is wherever
    TORCHINDUCTOR_CACHE_DIR points (the caller's choice: cold or warm)."""
    from fersnet.training.train import compile_task
    import torch._dynamo
    feed = Feed(cfg, seed)
    out = {"model": model, "folds": []}
    for fold in range(folds):
        task = build(cfg, model, seed + fold)
        t0 = time.perf_counter()
        ok = compile_task(task, "inductor")
        run = Runner(task, feed)
        first = run.block(1)
        second = run.block(4)           # StarGAN's first G step (step 4) compiles the G path
        row = {"fold": fold, "compile_task_s": time.perf_counter() - t0 - first * 1 - second * 4,
               "first_step_s": first, "next_4_steps_s": 4 * second, "compiled": ok}
        if fold == 0 and steps and rounds:
            eager = Runner(build(cfg, model, seed + fold), feed)
            eager.i = run.i
            row["steady"] = paired(eager, run, rounds, steps_per_block(model))
            row["steady"]["agreement_compiled_vs_eager"] = agreement(eager, run)
        out["folds"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    counters = {k: dict(v) for k, v in torch._dynamo.utils.counters.items() if k in ("stats", "frames", "inductor")}
    out["dynamo_counters"] = json.loads(json.dumps(counters, default=str))
    return out


def compile_lever(args, cfg_path: str, profile: str, model: str) -> dict:
    """Cold cache (new folder), then a new process on the same folder (warm FX graph cache)."""
    res = {}
    with tempfile.TemporaryDirectory(prefix="inductor-cache-") as cache:
        for label, steady in (("cold_process", True), ("warm_process", False)):
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
            cmd = [sys.executable, __file__, "--compile-probe", "--params", cfg_path, "--profile", profile,
                   "--models", model, "--folds", "2", "--rounds", str(args.rounds if steady else 0),
                   "--seed", str(args.seed)]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if p.returncode != 0:
                res[label] = {"error": p.stderr[-2000:]}
                continue
            res[label] = json.loads(p.stdout.strip().splitlines()[-1])
            res[label]["process_wall_s"] = wall
            print(json.dumps({"compile": model, label: res[label]["folds"]}), flush=True)
    return res


def job_estimate(eager_ms: float, compiled_ms: float, first_fold_overhead_s: float, later_fold_overhead_s: float,
                 folds: int = 10, steps=(240, 400)) -> dict:
    """Training seconds of a 10-fold job, eager vs compiled, at a given number of steps per fold."""
    out = {}
    for n in steps:
        eager = folds * n * eager_ms / 1e3
        comp = folds * n * compiled_ms / 1e3 + first_fold_overhead_s + (folds - 1) * later_fold_overhead_s
        out[f"{n}_steps_per_fold"] = {"eager_s": eager, "compiled_s": comp, "ratio": comp / eager}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--levers", nargs="+", default=list(LEVERS), choices=LEVERS)
    ap.add_argument("--compile-models", nargs="+", default=["fersnet", "stargan"])
    ap.add_argument("--lever-models", nargs="+", default=["fersnet", "stargan"],
                    help="models for the levers other than exact and compile")
    ap.add_argument("--ref", default="7e1fff4", help="git commit of the reference for the exact levers")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compile-probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--folds", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from fersnet.training.train import set_deterministic
    set_deterministic(torch, True)                  # as train.py does on the CPU
    cfg = config.load(a.params, a.profile)
    if a.compile_probe:
        print(json.dumps(compile_probe(cfg, a.models[0], a.seed, a.folds, 5, a.rounds)), flush=True)
        return {}
    rows = []
    for lever in a.levers:
        if lever == "compile":
            for m in a.compile_models:
                rows.append({"lever": "compile", "model": m, **compile_lever(a, a.params, a.profile, m)})
            continue
        for m in (a.models if lever == "exact" else a.lever_models):
            feed = Feed(cfg, a.seed)
            ra, rb = lever_pair(lever, cfg, m, feed, a.seed, a.ref)
            r = {"lever": lever, "model": m, **paired(ra, rb, a.rounds, steps_per_block(m))}
            r["agreement"] = agreement(ra, rb)
            print(json.dumps(r), flush=True)
            rows.append(r)
    out = {"bench": "levers", "profile": a.profile, "ref": a.ref, "threads": 1,
           "method": "A and B built from the same seed, fed the same batches; alternating blocks of 5 steps "
                     "(A B, B A, ...) after one warm-up block each; medians per step, median of per-round B/A",
           "results": rows}
    if a.out:
        save(a.out, f"bench/levers.py: CPU and wall ms per training step, A against B for the levers "
                    f"{', '.join(a.levers)} ({a.profile} profile)", out)
    return out


if __name__ == "__main__":
    main()
