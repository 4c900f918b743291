"""Model key -> model (networks + losses); loading a trained generator; parameter counts.

Keys: fersnet, no_mtl, no_convflu, fes_da, stargan (fersnet/config.py::MODELS).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from fersnet import paths
from fersnet.errors import FersnetError

GENERATOR_KEYS = ("fersnet", "no_mtl", "no_convflu", "fes_da", "stargan")


def build(model_key: str, cfg: dict, n_classes: int, channels: int):
    """The Task (nn.Module with train_step/classify/synthesize/gate_means) of a model key.

    fes_da builds the FERSNet it starts from; training swaps in the fine-tuning task.
    """
    if model_key in ("fersnet", "no_mtl", "no_convflu", "fes_da"):
        from fersnet.models.tasks import FersnetTask
        return FersnetTask(model_key, cfg, n_classes, channels)
    if model_key == "stargan":
        from fersnet.models.stargan import StarGANTask
        return StarGANTask(cfg, n_classes, channels)
    raise FersnetError(f"unknown model key {model_key!r}; allowed: {', '.join(GENERATOR_KEYS)}")


def generator_state(state: dict) -> dict:
    """The generator's weights (`gen.*`) out of a task state dict."""
    return {k[len("gen."):]: v for k, v in state.items() if k.startswith("gen.")}


def load_generator(run_dir, device="cpu"):
    """fn(images float (B,C,h,w) in [0,1], targets (B,) long) -> images (B,C,h,w) in [0,1].

    Uses the selected model of a finished run (checkpoint `selected`, else `model`).
    """
    import torch

    run_dir = Path(run_dir)
    ckpt_path, cfg_path = run_dir / paths.CHECKPOINT, run_dir / paths.CONFIG
    for p in (ckpt_path, cfg_path):
        if not p.is_file():
            raise FersnetError(f"{p}: missing; train this run first (`fersnet train`)")
    cfg = json.loads(cfg_path.read_text())
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    meta = ckpt["meta"]
    # runs trained before `model.output` existed used the direct decoder output
    cfg.setdefault("model", {}).setdefault("output", "direct")
    try:
        task = build(meta["model"], cfg, meta["n_classes"], meta["channels"])
    except KeyError as e:
        raise FersnetError(f"{cfg_path}: lacks the key {e} that this version needs to rebuild the model; "
                           f"train the run again (delete {run_dir})") from None
    gen = task.gen
    try:
        gen.load_state_dict(generator_state(ckpt.get("selected") or ckpt["model"]))
    except RuntimeError as e:
        raise FersnetError(f"{ckpt_path}: does not fit its config.json ({str(e).splitlines()[0]})") from None
    gen.to(device).eval()
    onehot = task.onehot

    @torch.no_grad()
    def generate(images, targets):
        images = images.to(device, torch.float32)
        return gen.synthesize(images, onehot(targets.to(device).long())).float().clamp(0, 1)

    return generate


def count_params(cfg: dict, n_classes: int, channels: int) -> list[dict]:
    """Parameter counts by part for every model key at cfg's scale."""
    rows = []
    for key in ("fersnet", "no_mtl", "no_convflu", "stargan"):
        task = build(key, cfg, n_classes, channels)
        gen_total = sum(p.numel() for p in task.gen.parameters())
        disc = sum(p.numel() for p in task.disc.parameters())
        parts = task.gen.parts() if key != "stargan" else {"fer": None, "fes": gen_total, "convflu": None, "shared": None}
        rows.append({"model": key, "classes": n_classes, "generator_net": gen_total, **parts, "discriminator": disc})
    return rows


def paper_scale(cfg: dict) -> dict:
    """cfg at the paper's scale: width 1.0, 96x96 crops (paper.md 1.1)."""
    cfg = copy.deepcopy(cfg)
    cfg["model"]["width"] = 1.0
    cfg["train"]["crop"] = 96
    return cfg


def _fmt(n) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}M"


def markdown_table(rows: list[dict], channels: int) -> str:
    lines = [f"Parameter counts at paper scale (width 1.0, 96x96, {channels} input channel(s)). "
             "`generator net` = everything that maps (image, target) to (logits, image); "
             "fes_da has fersnet's networks.", "",
             "| model | classes | generator net | FER only | FES only | ConvFLUs | shared trunk | discriminator |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['classes']} | {_fmt(r['generator_net'])} | {_fmt(r['fer'])} | "
                     f"{_fmt(r['fes'])} | {_fmt(r['convflu'])} | {_fmt(r['shared'])} | {_fmt(r['discriminator'])} |")
    return "\n".join(lines) + "\n"


def count_params_main(cfg: dict, args) -> dict:
    """CLI `fersnet count-params [--write FILE]`: counts at paper scale for 7 and 6 classes."""
    big = paper_scale(cfg)
    channels = 1 if cfg["preprocess"]["grayscale"] else 3
    rows = count_params(big, 7, channels) + count_params(big, 6, channels)
    table = markdown_table(rows, channels)
    print(table)
    if getattr(args, "write", None):
        out = Path(args.write)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(table)
        tmp.replace(out)
    return {}
