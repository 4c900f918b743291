"""Model key -> model (networks + losses); loading a trained generator; parameter counts.

The keys and what each model is are in the catalogue (fersnet/catalog.py).
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

from fersnet import catalog, ownership, paths
from fersnet.config import wanted
from fersnet.errors import CheckpointError, FersnetError

def build(model_key: str, cfg: dict, n_classes: int, channels: int):
    """The Task (nn.Module with train_step/classify/synthesize/gate_means) of a model key, built by
    the catalogue entry's `task` factory.

    fes_da and its control fes_da_real build the FERSNet they start from; training swaps in the
    fine-tuning task.
    """
    spec = catalog.model(model_key)
    return catalog.load(spec.task, f"model {model_key}")(model_key, cfg, n_classes, channels)


def stargan_task(model_key: str, cfg: dict, n_classes: int, channels: int):
    """StarGAN's task (the catalogue's factory for `stargan`)."""
    from fersnet.models.stargan import StarGANTask
    return StarGANTask(cfg, n_classes, channels)


def expression_weight(model_key: str, cfg: dict) -> float:
    """The weight of the expression loss (synthesized face through the FER branch -> target) of a
    model's generator: train.lambda_expr where the generator has a FER branch (catalogue
    `fer_branch`), else 0; no_mtl's generator is single-task and StarGAN has its own classifier."""
    return float(cfg["train"]["lambda_expr"]) if catalog.model(model_key).fer_branch else 0.0


def fersnet_losses(model_key: str, cfg: dict) -> list[tuple[str, str, float]]:
    """The synthesis losses of FERSNet and its variants (the `train` section's weights)."""
    tr = cfg["train"]
    return [("adv", "LSGAN adversarial (conditional discriminator)", tr["lambda_adv"]),
            ("L1", "paired L1 to the subject's real target face", tr["lambda_l1"]),
            ("cyc", "cycle reconstruction (MSE)", tr["lambda_cyc"]),
            ("expr", "expression loss through the FER branch", expression_weight(model_key, cfg)),
            ("id", "identity features", tr["lambda_id"])]


def stargan_losses(model_key: str, cfg: dict) -> list[tuple[str, str, float]]:
    """StarGAN's synthesis losses (the `stargan` section's weights)."""
    sg = cfg["stargan"]
    return [("adv", "WGAN-GP adversarial", 1.0), ("rec", "L1 cycle reconstruction", sg["lambda_rec"]),
            ("cls", "domain classification by its own discriminator", sg["lambda_cls"])]


def synthesis_losses(model_key: str, cfg: dict) -> list[tuple[str, str, float]]:
    """The losses that shape a model's synthesis, as (short name, what it is, weight), zero weights
    left out; the target signal is `expr` (expression loss through the FER branch) or `cls`
    (StarGAN's domain classification by its own discriminator), or absent (also for a model whose
    catalogue entry names no `losses`)."""
    spec = catalog.model(model_key)
    out = catalog.load(spec.losses, f"model {model_key}")(model_key, cfg) if spec.losses else []
    return [(name, what, float(w)) for name, what, w in out if w > 0]


def target_signal(model_key: str, cfg: dict) -> tuple[str, float] | None:
    """(loss name, weight) of the loss that pushes a generator's faces towards being read as the
    target: `expr` or `cls`; None when none does (only the paired L1 and the conditional discriminator)."""
    return next(((name, w) for name, _, w in synthesis_losses(model_key, cfg) if name in ("expr", "cls")), None)


def generator_state(state: dict) -> dict:
    """The generator's weights (`gen.*`) out of a task state dict."""
    return {k[len("gen."):]: v for k, v in state.items() if k.startswith("gen.")}


def read_checkpoint(path: Path, what: str, redo: str) -> dict:
    """torch.load(weights_only=True) of a checkpoint fersnet wrote; any failure is a one-line
    CheckpointError naming the file, what is wrong and `redo` (how to make it again)."""
    import torch
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling fails with many types; all mean the same here
        detail = {"EOFError": "empty or cut short", "UnpicklingError": "not a weights-only PyTorch file"}.get(
            type(e).__name__, (str(e).splitlines() or [type(e).__name__])[0][:120])
        raise CheckpointError(f"{path}: cannot be read as a {what} checkpoint: corrupt, truncated or not "
                              f"written by fersnet ({detail}); {redo}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: holds a {type(ckpt).__name__}, not a {what} checkpoint written "
                              f"by fersnet; {redo}")
    return ckpt


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
    redo = f"train the run again (`fersnet train ... --force`) or delete {run_dir}"
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: cannot be read ({e}); {redo}") from None
    ckpt = read_checkpoint(ckpt_path, "generator", redo)
    meta = ckpt.get("meta")
    if (not isinstance(meta, dict) or meta.get("model") not in catalog.models()
            or not {"n_classes", "channels"} <= meta.keys()
            or not isinstance(ckpt.get("selected") or ckpt.get("model"), dict)):
        raise CheckpointError(f"{ckpt_path}: not a generator checkpoint written by `fersnet train` (no "
                              f"`meta` naming one of {', '.join(catalog.models())} and no `model` weights); {redo}")
    # runs trained before `model.output` / `model.arch` existed used the direct output, the paper network
    cfg.setdefault("model", {}).setdefault("output", "direct")
    cfg["model"].setdefault("arch", "paper")
    try:
        task = build(meta["model"], cfg, meta["n_classes"], meta["channels"])
    except KeyError as e:
        raise FersnetError(f"{cfg_path}: lacks the key {e} that this version needs to rebuild the model; "
                           f"train the run again (delete {run_dir})") from None
    # as the run trained: InstanceNorm's float32 path follows train.fast_ops (runs from before the
    # key trained with it on)
    task.set_fast_ops(wanted(cfg["train"].get("fast_ops", "yes"), torch.device(device)))
    if catalog.model(meta["model"]).origin is not None:
        return _plugin_generator(task, ckpt, ckpt_path, redo, device)
    gen = task.gen
    try:
        gen.load_state_dict(generator_state(ckpt.get("selected") or ckpt["model"]))
    except (RuntimeError, TypeError, AttributeError, ValueError) as e:
        raise CheckpointError(f"{ckpt_path}: does not fit its config.json ({(str(e).splitlines() or [''])[0]}); "
                              f"{redo}") from None
    gen.to(device).eval()
    onehot = task.onehot

    @torch.no_grad()
    def generate(images, targets):
        images = images.to(device, torch.float32)
        return gen.synthesize(images, onehot(targets.to(device).long())).float().clamp(0, 1)

    return generate


def _plugin_generator(task, ckpt: dict, ckpt_path: Path, redo: str, device):
    """An external model's generate function: its whole task state, its own `synthesize`."""
    import torch
    try:
        task.load_state_dict(ckpt.get("selected") or ckpt["model"])
    except (RuntimeError, TypeError, AttributeError, ValueError) as e:
        raise CheckpointError(f"{ckpt_path}: does not fit its config.json ({(str(e).splitlines() or [''])[0]}); "
                              f"{redo}") from None
    task.to(device).eval()

    @torch.no_grad()
    def generate(images, targets):
        images = images.to(device, torch.float32)
        return task.synthesize(images, targets.to(device).long()).float().clamp(0, 1)

    return generate


# what every task needs (fersnet.models.tasks.Task provides all but train_step, classify, synthesize)
TASK_METHODS = ("train_step", "state_dict", "load_state_dict", "set_lr_factor", "current_lr", "set_fast_ops",
                "use_fused_adam", "compile_networks")


def check_plugins(cfg: dict) -> None:
    """Build every external model of params `models` at the run's crop and the first database's
    classes and try one training step, `classify` and `synthesize` on random faces, before any job
    starts: an import error, a missing method, a failing step or a wrong output shape is a
    CatalogError naming the plugin. No torch import when there is no external model."""
    specs = catalog.plugins(cfg["models"])
    if not specs:
        return
    import torch
    n_classes = len(catalog.database(cfg["databases"][0]).class_list(cfg))
    channels, crop = (1 if cfg["preprocess"]["grayscale"] else 3), int(cfg["train"]["crop"])
    for spec in specs:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _check_plugin(spec, cfg, n_classes, channels, crop, torch)


def _check_plugin(spec, cfg: dict, n_classes: int, channels: int, crop: int, torch) -> None:
    label = f"model plugin {spec.origin.plugin!r} (model {spec.key})"

    def failed(what: str, e: Exception) -> catalog.CatalogError:
        return catalog.CatalogError(f"{label}: {what} failed ({type(e).__name__}: "
                                    f"{(str(e).splitlines() or [''])[0][:200]})")

    factory = catalog.load(spec.task, label)
    try:
        task = factory(spec.key, cfg, n_classes, channels)
    except Exception as e:  # noqa: BLE001 - someone else's code: any failure is named in one line
        raise failed(f"building its task ({spec.task})", e) from None
    from fersnet.models.tasks import Task
    own = ("classify",) * spec.classifies + ("synthesize",) * spec.synthesizes     # the base's assume FERSNet's networks
    missing = [m for m in TASK_METHODS + own if not callable(getattr(task, m, None))
               or (m in own and getattr(type(task), m, None) is getattr(Task, m))]
    if not isinstance(task, torch.nn.Module) or missing or not isinstance(getattr(task, "optimizers", None), dict):
        lacks = ", ".join(missing) or "an nn.Module with an `optimizers` dict"
        raise catalog.CatalogError(f"{label}: its task ({type(task).__name__}) lacks {lacks}; subclass "
                                   "fersnet.models.tasks.Task (docs/extending.md)")
    if bool(getattr(task, "has_classifier", False)) != spec.classifies:
        raise catalog.CatalogError(f"{label}: its task's has_classifier is {getattr(task, 'has_classifier', None)} "
                                   f"but its catalogue entry says classifies={spec.classifies}")
    b = 4
    x = torch.rand(b, channels, crop, crop)
    s = torch.arange(b) % n_classes
    t = (s + 1) % n_classes
    batch = {"x": x, "s": s, "xt": torch.rand_like(x), "t": t, "has_t": torch.ones(b, dtype=torch.bool), "step": 0}
    try:
        task.train()
        out = task.train_step(batch)
    except Exception as e:  # noqa: BLE001
        raise failed("one training step on random faces", e) from None
    if not isinstance(out, dict) or not all(torch.is_tensor(v) and v.numel() == 1 for v in out.values()):
        raise catalog.CatalogError(f"{label}: train_step must return a dict of scalar tensors, got "
                                   f"{type(out).__name__}")
    task.eval()
    checks = [("classify", lambda: task.classify(x), (b, n_classes))] * spec.classifies + \
             [("synthesize", lambda: task.synthesize(x, t), tuple(x.shape))] * spec.synthesizes
    for name, call, shape in checks:
        try:
            with torch.no_grad():
                y = call()
        except Exception as e:  # noqa: BLE001
            raise failed(name, e) from None
        if not torch.is_tensor(y) or tuple(y.shape) != shape:
            got = tuple(y.shape) if torch.is_tensor(y) else type(y).__name__
            raise catalog.CatalogError(f"{label}: {name} returned {got} for {b} faces of {channels}x{crop}x{crop}; "
                                       f"expected a tensor of shape {shape}")


ARCHS = ("paper", "r2021")
# the authors' setting, at which r2021 must have the counts of their code (cikrhazo/FERSNet a5d9d2e)
R2021_REFERENCE = {"channels": 3, "classes": 6, "crop": 96,
                   "generator_net": 53_983_438, "discriminator": 2_770_881}


def count_params(cfg: dict, n_classes: int, channels: int, keys=None) -> list[dict]:
    """Parameter counts by part for model keys (default: every generator) at cfg's scale and `model.arch`."""
    rows = []
    for key in catalog.generators() if keys is None else keys:
        task = build(key, cfg, n_classes, channels)
        gen_total = sum(p.numel() for p in getattr(task, "gen", task).parameters())
        disc = sum(p.numel() for p in task.disc.parameters()) if hasattr(task, "disc") else None
        parts = (task.gen.parts() if hasattr(task.gen, "parts")
                 else {"fer": None, "fes": gen_total, "convflu": None, "shared": None})
        arch = cfg["model"]["arch"] if catalog.model(key).follows_arch else "-"
        rows.append({"arch": arch, "model": key, "classes": n_classes, "generator_net": gen_total, **parts,
                     "discriminator": disc})
    return rows


def paper_scale(cfg: dict, arch: str | None = None) -> dict:
    """cfg at the paper's scale: width 1.0, 96x96 crops (paper.md 1.1), optionally another `model.arch`."""
    cfg = copy.deepcopy(cfg)
    cfg["model"]["width"] = 1.0
    cfg["train"]["crop"] = 96
    if arch:
        cfg["model"]["arch"] = arch
    return cfg


def r2021_reference_counts(cfg: dict) -> dict:
    """(generator net, discriminator) of `fersnet` at r2021 in the authors' setting: 3 channels, 6 classes, 96 px."""
    ref = R2021_REFERENCE
    row = count_params(paper_scale(cfg, "r2021"), ref["classes"], ref["channels"], keys=("fersnet",))[0]
    return {"generator_net": row["generator_net"], "discriminator": row["discriminator"]}


def _fmt(n) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}M"


def markdown_table(rows: list[dict], channels: int) -> str:
    lines = [f"Parameter counts at paper scale (width 1.0, 96x96, {channels} input channel(s)). "
             "`arch` = `model.arch` (paper: the paper's figure; r2021: the authors' released network); "
             "`generator net` = everything that maps (image, target) to (logits, image); "
             "fes_da and fes_da_real have fersnet's networks.", "",
             "| arch | model | classes | generator net | FER only | FES only | ConvFLUs | shared | discriminator |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['model']} | {r['classes']} | {_fmt(r['generator_net'])} | {_fmt(r['fer'])} | "
                     f"{_fmt(r['fes'])} | {_fmt(r['convflu'])} | {_fmt(r['shared'])} | {_fmt(r['discriminator'])} |")
    return "\n".join(lines) + "\n"


def count_params_main(cfg: dict, args) -> dict:
    """CLI `fersnet count-params [--write FILE]`: counts at paper scale, both architectures, 7 and 6 classes."""
    channels = 1 if cfg["preprocess"]["grayscale"] else 3
    rows = []
    for n_classes in (7, 6):
        for arch in ARCHS:
            # a model whose networks do not follow `model.arch` is counted once, with the last arch
            keys = [m for m in catalog.generators() if catalog.model(m).follows_arch or arch == ARCHS[-1]]
            rows += count_params(paper_scale(cfg, arch), n_classes, channels, keys)
    ref, got = R2021_REFERENCE, r2021_reference_counts(cfg)
    table = markdown_table(rows, channels) + (
        f"\nr2021 fersnet in the authors' setting ({ref['channels']} channels, {ref['classes']} classes, "
        f"{ref['crop']}x{ref['crop']}): generator net {got['generator_net']:,}, discriminator "
        f"{got['discriminator']:,} (the authors' code: {ref['generator_net']:,} and {ref['discriminator']:,}).\n")
    print(table)
    if getattr(args, "write", None):
        out = Path(args.write)
        out.parent.mkdir(parents=True, exist_ok=True)
        ownership.write_text(out, table)
    return {}
