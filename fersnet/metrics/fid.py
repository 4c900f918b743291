"""FID and KID on pytorch-fid's Inception features, with offline weight handling.

pytorch-fid 0.3.0 always fetches its weights through `load_state_dict_from_url` into
`torch.hub.get_dir()/checkpoints/` and has no local-path argument (docs/scoring.md, "Inception
weights offline"). We keep its network and its loading code, and choose only where that call looks:

1. `fid.inception_weights: <file>`: the file is linked into a private temporary hub
   folder for the duration of the load, so pytorch-fid finds it "in the cache".
2. otherwise the normal torch hub cache (`$TORCH_HOME/hub/checkpoints/`).
3. otherwise, only if `fid.download: true`, pytorch-fid's own download.

If none works, `load_inception` raises `InceptionUnavailable` with the reason and the
fix; the scoring job records that (or, with `fid.require_inception: true`, stops).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from fersnet.errors import FersnetError
from fersnet.provenance import file_sha256
from fersnet.seeds import stream

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_SHA256_PREFIX = "6726825d"     # pytorch-fid's file name carries its hash prefix
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE)

HOW_TO_GET = (f"download {WEIGHTS_URL} on a machine with internet, copy it here and set "
              f"`fid.inception_weights: <path>` in params.yaml (or place it in "
              f"$TORCH_HOME/hub/checkpoints/{WEIGHTS_FILE}); see docs/scoring.md")


class InceptionUnavailable(FersnetError):
    """pytorch-fid's Inception weights cannot be loaded; the message says why and what to do."""


def hub_cache_file() -> Path:
    """Where pytorch-fid's download would put (and look for) the weights."""
    import torch
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def weights_source(cfg: dict) -> tuple[str, Path | None]:
    """('local', file) | ('cache', file) | ('download', None) | ('missing', None), without loading."""
    local = cfg["fid"]["inception_weights"]
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise InceptionUnavailable(f"`fid.inception_weights` points to {path}, which does not exist; "
                                       + HOW_TO_GET)
        return "local", path
    cached = hub_cache_file()
    if cached.is_file():
        return "cache", cached
    if cfg["fid"]["download"]:
        return "download", None
    return "missing", None


def _build_inception(dims: int):
    from pytorch_fid.inception import InceptionV3
    return InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]])


def _build_with_hub_dir(dims: int, hub_dir: Path):
    """Build pytorch-fid's InceptionV3 while torch.hub looks in `hub_dir` (then restore it)."""
    import torch.hub
    # Restore the private attribute, not get_dir(): get_dir() would freeze a TORCH_HOME-derived
    # default into an explicit setting for the rest of the process.
    previous = getattr(torch.hub, "_hub_dir", None)
    torch.hub.set_dir(str(hub_dir))
    try:
        return _build_inception(dims)
    finally:
        torch.hub._hub_dir = previous


def _link_into_hub(weights: Path, hub_dir: Path) -> None:
    ckpt_dir = hub_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    try:
        os.symlink(weights.resolve(), ckpt_dir / WEIGHTS_FILE)
    except OSError:  # file systems without symlinks
        shutil.copyfile(weights, ckpt_dir / WEIGHTS_FILE)


def _check_plain_state_dict(path: Path) -> None:
    """Refuse pickles that are not plain tensors before pytorch-fid loads the file.

    pytorch-fid's `load_state_dict_from_url` uses torch.load's default (weights_only=False),
    which would run arbitrary code in a tampered file; this safe load goes first.
    """
    import torch
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("not a state dict of tensors")


def load_inception(cfg: dict, device: str = "cpu"):
    """pytorch-fid's FID Inception (eval mode) for `fid.dims`, plus a provenance dict.

    Raises InceptionUnavailable (with the fix) when the weights cannot be found or loaded.
    """
    dims = int(cfg["fid"]["dims"])
    source, path = weights_source(cfg)
    if source == "missing":
        raise InceptionUnavailable(f"pytorch-fid's Inception weights are not in the torch hub cache "
                                   f"({hub_cache_file()}) and `fid.download` is false; " + HOW_TO_GET)
    try:
        if path is not None:
            _check_plain_state_dict(path)
        if source == "local":
            with tempfile.TemporaryDirectory(prefix="fersnet-hub-") as hub:
                _link_into_hub(path, Path(hub))
                model = _build_with_hub_dir(dims, Path(hub))
        else:  # 'cache' loads from the file; 'download' lets pytorch-fid fetch it
            model = _build_inception(dims)
            path = hub_cache_file()
    except Exception as e:  # noqa: BLE001 - network, corrupt file, wrong architecture: all one situation
        where = f"the file {path}" if path else f"the download from {WEIGHTS_URL}"
        raise InceptionUnavailable(f"could not load pytorch-fid's Inception weights from {where} "
                                   f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
                                   + HOW_TO_GET) from None
    digest = file_sha256(path)
    info = {"source": source, "file": str(path), "sha256": digest, "dims": dims,
            "official": digest.startswith(WEIGHTS_SHA256_PREFIX)}
    return model.to(device).eval(), info


def inception_features(model, images: np.ndarray, batch_size: int = 50, device: str = "cpu") -> np.ndarray:
    """Pool features (N, dims) of uint8 (N, H, W, C) images, as pytorch-fid computes them.

    Pixels go in as [0, 1] with grayscale replicated to 3 channels (pytorch-fid's PIL
    `.convert("RGB")` does the same); the network resizes to 299 and rescales to [-1, 1].
    """
    import torch
    from torch.nn.functional import adaptive_avg_pool2d
    from fersnet.metrics.common import to_tensor

    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected (N, H, W, 1|3) images, got {images.shape}")
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = to_tensor(images[i:i + batch_size], device)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            feat = model(x)[0]
            if feat.shape[2:] != (1, 1):  # blocks before the last: pooled as in pytorch-fid
                feat = adaptive_avg_pool2d(feat, output_size=(1, 1))
            out.append(feat.squeeze(3).squeeze(2).cpu().double())
    return torch.cat(out).numpy()


def statistics(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, rowvar=False) covariance, as pytorch-fid's activation statistics."""
    feats = np.asarray(feats, dtype=np.float64)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _psd_eigvals(vals: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with round-off (|v| below dim * eps * max) set to zero.

    With fewer samples than dimensions most eigenvalues are exactly zero in theory; their
    round-off (~1e-16) would otherwise add sqrt(1e-16) each to the trace term.
    """
    tol = len(vals) * np.finfo(np.float64).eps * max(float(np.abs(vals).max(initial=0.0)), 1e-300)
    return np.where(vals > tol, vals, 0.0)


def _sqrt_psd(mat: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((mat + mat.T) / 2)
    return (vecs * np.sqrt(_psd_eigvals(vals))) @ vecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) for two Gaussians.

    Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2): the symmetric form needs only eigh of PSD
    matrices, so it cannot produce the "imaginary component" failures of sqrtm on
    rank-deficient covariances (fewer samples than dims; pytorch-fid#13).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}")
    root1 = _sqrt_psd(sigma1)
    inner = root1 @ sigma2 @ root1
    tr_covmean = float(np.sqrt(_psd_eigvals(np.linalg.eigvalsh((inner + inner.T) / 2))).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """Frechet distance between two feature sets (each needs at least 2 rows)."""
    if len(f1) < 2 or len(f2) < 2:
        raise ValueError(f"FID needs at least 2 samples per set, got {len(f1)} and {len(f2)}")
    return frechet_distance(*statistics(f1), *statistics(f2))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3, the KID kernel (Binkowski et al. 2018)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the polynomial kernel: the diagonal terms k(x_i, x_i) are excluded."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kid(f1: np.ndarray, f2: np.ndarray, subset_size: int, n_subsets: int, seed: int = 0) -> dict:
    """KID: mean and std of the unbiased MMD^2 over random subsets of size min(subset_size, n1, n2)."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    m = int(min(subset_size, len(f1), len(f2)))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(f1)} and {len(f2)}")
    rng = np.random.default_rng(seed)
    vals = np.array([mmd2_unbiased(f1[rng.choice(len(f1), m, replace=False)],
                                   f2[rng.choice(len(f2), m, replace=False)]) for _ in range(n_subsets)])
    return {"mean": float(vals.mean()), "std": float(vals.std()), "subset_size": m, "n_subsets": int(n_subsets)}


def fid_inception_architecture():
    """pytorch-fid's FID Inception network with fresh (random) weights, built without any download.

    Same modules as `pytorch_fid.inception.fid_inception_v3()` minus its weight fetch; used
    to write a weights file of the real architecture (tests, offline smoke checks).
    """
    from pytorch_fid import inception as pf
    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net


def class_pairs(syn_labels: np.ndarray, ref_labels: np.ndarray, n_classes: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """class -> (rows of the synthesized set with that target, rows of the real reference of that class)."""
    syn_labels, ref_labels = np.asarray(syn_labels, int), np.asarray(ref_labels, int)
    return {k: (np.flatnonzero(syn_labels == k), np.flatnonzero(ref_labels == k)) for k in range(n_classes)}


def class_conditional(f_syn: np.ndarray, syn_targets: np.ndarray, f_ref: np.ndarray, ref_labels: np.ndarray,
                      classes: list[str], kid_subset: int | None = None, kid_subsets: int = 0,
                      seed: int = 0) -> dict:
    """Frechet distance (and, with `kid_subset`, KID) per target expression: the synthesized faces of
    target t against the real reference faces of class t, then the unweighted mean over the classes
    where both sides have at least 2 faces (intra-class FID, Miyato & Koyama 2018).

    A pooled set of all targets against all real faces is blind to which expression a face has: a
    generator that returns its input unchanged has the real faces' class mix and scores ~0. Per
    class, its faces (all of other expressions) are far from the target's real faces.

    `seed` is the job's seed: the KID subsets of class k draw from the seed stream `kid` of (seed, k)
    (fersnet.seeds), the same in every fold.

    Returns `fd` (mean over the usable classes, None if none), `fd_per_target`, and with KID `kid`
    (mean of the per-class means), `kid_std` (std of that mean: sqrt(sum of per-class variances) / C,
    the subsets being drawn independently per class), `kid_per_target`, `kid_subset_size` (the
    smallest used); `n_per_target` ({"synthetic", "reference"} per class) and `classes_used`.
    """
    pairs = class_pairs(syn_targets, ref_labels, len(classes))
    fd, kid_mean, kid_sd, counts, used, sizes = {}, {}, {}, {}, [], []
    for k, name in enumerate(classes):
        rs, rr = pairs[k]
        counts[name] = {"synthetic": int(len(rs)), "reference": int(len(rr))}
        fd[name] = kid_mean[name] = kid_sd[name] = None
        if len(rs) < 2 or len(rr) < 2:
            continue
        used.append(name)
        fd[name] = fid_from_features(f_syn[rs], f_ref[rr])
        if kid_subset:
            r = kid(f_syn[rs], f_ref[rr], kid_subset, kid_subsets, seed=stream("kid", seed, k))
            kid_mean[name], kid_sd[name] = r["mean"], r["std"]
            sizes.append(r["subset_size"])
    out = {"fd": float(np.mean([fd[c] for c in used])) if used else None, "fd_per_target": fd,
           "n_per_target": counts, "classes_used": used}
    if kid_subset:
        out.update({"kid": float(np.mean([kid_mean[c] for c in used])) if used else None,
                    "kid_std": float(np.sqrt(sum(kid_sd[c] ** 2 for c in used)) / len(used)) if used else None,
                    "kid_per_target": kid_mean, "kid_subset_size": min(sizes) if sizes else None})
    return out
