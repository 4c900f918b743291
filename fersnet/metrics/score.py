"""The scoring job: synthesize every test face into every other expression and score it.

    fersnet score --db <db> --model <m> --fold <k>  ->  results/<db>/<m>/fold<k>/synthesis/
        images.npy, index.csv, grid.png, features.npz, scores.json (written last)
    fersnet pool --db <db>  ->  results/<db>/<m>/synthesis_pooled.json (every generator model)

What is compared with what (docs/scoring.md):
- judge accuracy: the fold's judge (trained on real training faces only) on the synthesized
  faces, counted correct when it predicts the target expression;
- FID / KID: pytorch-fid Inception features of all synthesized faces of the fold against
  all real test faces of the fold (centre crops, as the generators see them);
- SSIM / PSNR: each synthesized face against the same subject's real faces of the target;
- judge_fid: Frechet distance on the judge's own penultimate features (domain-specific).
"""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from fersnet import catalog, ownership, paths, provenance
from fersnet.errors import DataError, FersnetError
from fersnet.metrics import fid as fidlib
from fersnet.metrics.common import centre_crop, resolve_device, staged_outputs, to_tensor, to_uint8, write_json

FEATURES = "features.npz"
POOLED = "synthesis_pooled.json"
SYNTH_BATCH = 64


def pooled_path(cfg: dict, db: str, model: str) -> Path:
    """results/<db>/<model>/seed<s>/synthesis_pooled.json (architecture.md)."""
    return paths.pooled_file(cfg, db, model)


def synthesis_plan(labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(source position, target label) for every source and every target other than its own."""
    src = np.repeat(np.arange(len(labels)), n_classes)
    tgt = np.tile(np.arange(n_classes), len(labels))
    keep = tgt != np.repeat(np.asarray(labels, int), n_classes)
    return src[keep], tgt[keep]


def synthesize(generator, faces: np.ndarray, sources: np.ndarray, targets: np.ndarray,
               device: str = "cpu", batch_size: int = SYNTH_BATCH) -> np.ndarray:
    """uint8 (M, h, w, C) faces made by `generator` from faces[sources] towards `targets`."""
    import torch
    out = []
    with torch.inference_mode():
        for i in range(0, len(sources), batch_size):
            x = to_tensor(faces[sources[i:i + batch_size]], device)
            t = torch.from_numpy(np.asarray(targets[i:i + batch_size], np.int64)).to(device)
            y = generator(x, t)
            if tuple(y.shape) != tuple(x.shape):
                raise FersnetError(f"the generator returned images of shape {tuple(y.shape)} for inputs "
                                   f"{tuple(x.shape)}; it must keep the input shape")
            if not torch.isfinite(y).all():
                raise FersnetError("the generator returned non-finite pixel values")
            out.append(to_uint8(y))
    return np.concatenate(out) if out else np.zeros((0, *faces.shape[1:]), np.uint8)


def judge_accuracy(pred: np.ndarray, targets: np.ndarray, classes: list[str]) -> dict:
    """Share of synthesized faces classified as their target, overall and per target class."""
    pred, targets = np.asarray(pred), np.asarray(targets)
    correct = pred == targets
    per = {c: (float(correct[targets == k].mean()) if (targets == k).any() else None)
           for k, c in enumerate(classes)}
    return {"judge_accuracy": float(correct.mean()) if len(correct) else None,
            "judge_accuracy_per_target": per}


def grid_sources(labels: np.ndarray, n_classes: int) -> list[int]:
    """One source face per class present (its first test face): the readable subset of the grid."""
    labels = np.asarray(labels)
    return [int(np.flatnonzero(labels == k)[0]) for k in range(n_classes) if (labels == k).any()]


GRID_CELL = 96          # px per face in grid.png (nearest-neighbour upscaling keeps the pixels visible)


def write_grid(path: Path, faces: np.ndarray, labels: np.ndarray, synth: np.ndarray,
               sources: np.ndarray, targets: np.ndarray, classes: list[str], title: str) -> None:
    """grid.png: rows = one source per class, columns = the input then every target expression.

    Drawn with OpenCV: a matplotlib figure of 8 x 8 axes cost ~2 s per fold, a quarter of the
    demo's scoring time. The source's own expression is a light empty cell.
    """
    import cv2
    from fersnet.names import EXPRESSION

    rows = grid_sources(labels, len(classes))
    names = ["input"] + [EXPRESSION.get(c, c) for c in classes]
    cell, gap, left, top = GRID_CELL, 6, 86, 44
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    width = left + len(names) * (cell + gap)
    height = top + len(rows) * (cell + gap)
    sheet = np.full((height, width, 3), 255, np.uint8)
    lookup = {(int(s), int(t)): i for i, (s, t) in enumerate(zip(sources, targets))}

    def put(img, x, y):
        img = np.asarray(img, np.uint8)
        img = np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img[..., ::-1]   # RGB -> BGR
        sheet[y:y + cell, x:x + cell] = cv2.resize(img, (cell, cell), interpolation=cv2.INTER_NEAREST)

    cv2.putText(sheet, title, (4, 16), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for c, name in enumerate(names):
        cv2.putText(sheet, name[:12], (left + c * (cell + gap) + 2, top - 8), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    for r, pos in enumerate(rows):
        y = top + r * (cell + gap)
        label = EXPRESSION.get(classes[int(labels[pos])], classes[int(labels[pos])])
        cv2.putText(sheet, label[:12], (4, y + cell // 2), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
        put(faces[pos], left, y)
        for k in range(len(classes)):
            x = left + (k + 1) * (cell + gap)
            if (pos, k) in lookup:
                put(synth[lookup[(pos, k)]], x, y)
            else:
                sheet[y:y + cell, x:x + cell] = 220
    # score_job writes into its staging folder (staged_outputs), which is what makes this atomic
    if not cv2.imwrite(str(path), sheet):
        raise FersnetError(f"{path}: could not write the synthesis grid")


def open_inception(cfg: dict, device: str, log) -> tuple[object, dict | None, str | None]:
    """(model, provenance, None) or (None, None, reason); with `fid.require_inception` a missing
    network is a FersnetError. Called before any synthesis so that a required FID fails fast."""
    try:
        model, info = fidlib.load_inception(cfg, device)
    except fidlib.InceptionUnavailable as e:
        if cfg["fid"]["require_inception"]:
            raise FersnetError(f"FID/KID required (`fid.require_inception: true`) but unavailable: {e}") from None
        log(f"score: FID/KID unavailable (recorded in scores.json): {e}")
        return None, None, str(e)
    return model, info, None


def _fid_kid(cfg: dict, inception, synth: np.ndarray, real: np.ndarray, device: str) -> tuple[dict, dict]:
    """Inception FID/KID entries of scores.json and the features to save (empty when unavailable)."""
    model, info, reason = inception
    m = len(synth)
    entry = {f"fid_n{m}": None, f"kid_n{m}": None, f"kid_n{m}_std": None, "fid": None, "kid": None,
             "fid_dims": int(cfg["fid"]["dims"]), "inception": info}
    if model is None:
        return dict(entry, fid_unavailable=reason), {}
    t0 = time.perf_counter()
    bs = int(cfg["fid"]["batch_size"])
    f_syn = fidlib.inception_features(model, synth, bs, device)
    f_real = fidlib.inception_features(model, real, bs, device)
    fid_value = fidlib.fid_from_features(f_syn, f_real)
    k = fidlib.kid(f_syn, f_real, cfg["fid"]["kid_subset"], cfg["fid"]["kid_subsets"], seed=int(cfg["seed"]))
    entry.update({f"fid_n{m}": fid_value, f"kid_n{m}": k["mean"], f"kid_n{m}_std": k["std"],
                  "fid": fid_value, "kid": k["mean"], "kid_std": k["std"],
                  "kid_subset_size": k["subset_size"], "kid_subsets": k["n_subsets"],
                  "inception": info, "seconds_inception": round(time.perf_counter() - t0, 3)})
    if not info["official"]:
        entry["inception_warning"] = (f"weights file {info['file']} is not pytorch-fid's official file "
                                      f"(sha256 {info['sha256'][:8]}..., expected {fidlib.WEIGHTS_SHA256_PREFIX}...); "
                                      "FID/KID are not comparable with published values")
    return entry, {"inception_synthetic": f_syn.astype(np.float32), "inception_real": f_real.astype(np.float32)}


def _load_generator(cfg: dict, db: str, model: str, fold: int, device: str):
    run = paths.run_dir(cfg, db, model, fold)
    if not (run / paths.METRICS).is_file():
        raise DataError(f"{run / paths.METRICS}: missing; train first "
                        f"(`fersnet train --db {db} --model {model} --fold {fold}`)")
    from fersnet.models.registry import load_generator
    return load_generator(run, device)


def check_judge_fits(judge, judge_dir: Path, crop: int, n_classes: int) -> None:
    """A judge scores only faces of the crop and classes it was trained on."""
    if judge.crop != crop or judge.fc.out_features != n_classes:
        raise DataError(f"{judge_dir}: judge was trained for {judge.fc.out_features} classes at crop "
                        f"{judge.crop}, data has {n_classes} at {crop}; delete it and re-run `fersnet judge`")


def score_fingerprint(cfg: dict, db: str, model: str, fold: int):
    """params, processed data, and the two checkpoints a scoring job reads (generator and judge)."""
    inputs = {}
    for f in (paths.run_dir(cfg, db, model, fold) / paths.CHECKPOINT, paths.judge_dir(cfg, db, fold) / paths.CHECKPOINT):
        if f.is_file():
            inputs[str(f)] = None
    inputs["Inception weights"] = _inception_state(cfg)
    return provenance.fingerprint(cfg, "score", db, model, fold, inputs)


def _inception_state(cfg: dict) -> str:
    """The Inception weights FID/KID would use (their content hash), or why there are none: weights
    supplied after a run change its scores (n/a -> numbers), so they are one of its inputs."""
    try:
        how, path = fidlib.weights_source(cfg)
    except fidlib.InceptionUnavailable:
        return "missing"
    return provenance.file_sha256(path)[:16] if path is not None else how


def score_job(cfg: dict, db: str, model: str, fold: int, device: str | None = None,
              generator=None, log=None, force: bool = False) -> dict:
    """Synthesize and score one (database, generator model, fold); returns scores.json's content.

    `generator` replaces the trained model of the run folder (same call signature as
    `fersnet.models.registry.load_generator`'s function); a finished job is not redone.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if model not in catalog.generators():
        raise FersnetError(f"score: model {model!r} is not a generator; allowed: {', '.join(catalog.generators())}")
    out = paths.synthesis_dir(cfg, db, model, fold)
    ownership.check_data_roots(cfg, out, "fersnet score")
    ownership.clean_temps(out)             # leftovers of a killed scoring job of this fold
    fp = score_fingerprint(cfg, db, model, fold)
    if generator is not None:           # a generator passed in (not the run's checkpoint): always scored
        fp.inputs["generator"] = f"in-memory {type(generator).__name__}"
    done = provenance.reuse(out / paths.SCORES, fp, force, log)
    if done is not None:
        return done
    import torch
    from fersnet.data.dataset import load_processed
    from fersnet.metrics.judge import features as judge_features, load_judge, predict_and_features

    t_start = time.perf_counter()
    device = resolve_device(cfg, device)
    torch.set_num_threads(int(cfg["train"]["threads"]))
    torch.manual_seed(int(cfg["seed"]) * 1000 + int(fold))

    data = load_processed(cfg, db)
    _, test_rows = data.split(fold)
    crop = int(cfg["train"]["crop"])
    classes = list(data.classes)
    faces = centre_crop(data.images[test_rows], crop)
    labels = data.meta["label"].to_numpy()[test_rows].astype(int)
    subjects = data.meta["subject"].astype(str).to_numpy()[test_rows]

    judge_dir = paths.judge_dir(cfg, db, fold)
    judge = load_judge(judge_dir, device)
    check_judge_fits(judge, judge_dir, crop, len(classes))
    if generator is None:
        generator = _load_generator(cfg, db, model, fold, device)
    inception = open_inception(cfg, device, log)

    sources, targets = synthesis_plan(labels, len(classes))
    synth = synthesize(generator, faces, sources, targets, device)
    logits, j_syn = predict_and_features(judge, synth, device)   # one judge pass: labels and judge_fid features
    pred = logits.argmax(1)
    acc = judge_accuracy(pred, targets, classes)

    from fersnet.metrics.similarity import paired_similarity
    sim = paired_similarity(synth, subjects[sources], targets, faces, subjects, labels)
    m = len(synth)
    j_real = judge_features(judge, faces, device)
    fid_entry, inception_feats = _fid_kid(cfg, inception, synth, faces, device)
    judge_real_acc = json.loads((judge_dir / paths.METRICS).read_text()).get("accuracy")

    scores = {"db": db, "model": model, "fold": int(fold), "classes": classes,
              "n_sources": int(len(faces)), "n_synthetic": int(m), "n_real": int(len(faces)),
              **acc, "judge_accuracy_real": judge_real_acc,
              **fid_entry,
              "ssim": sim["ssim"], "psnr": sim["psnr"], "n_pairs": sim["n_pairs"],
              f"judge_fid_n{m}": fidlib.fid_from_features(j_syn, j_real), "judge_fid": None,
              "seconds": None, "device": device, **provenance.stamp(fp)}
    scores["judge_fid"] = scores[f"judge_fid_n{m}"]
    with staged_outputs(out, paths.SCORES, "fersnet score") as tmp:
        np.save(tmp / paths.SYNTH_IMAGES, synth)
        with open(tmp / paths.SYNTH_INDEX, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["row", "index", "subject", "source_label", "target_label"])
            for r, (s, t) in enumerate(zip(sources, targets)):
                w.writerow([r, int(test_rows[s]), subjects[s], int(labels[s]), int(t)])
        write_grid(tmp / paths.SYNTH_GRID, faces, labels, synth, sources, targets, classes,
                   f"{db} / {model} / fold {fold}")
        np.savez(tmp / FEATURES, target=targets.astype(np.int64), real_label=labels.astype(np.int64),
                 judge_pred=pred.astype(np.int64), per_face_ssim=sim["per_face_ssim"],
                 per_face_psnr=sim["per_face_psnr"], **inception_feats)
        scores["seconds"] = round(time.perf_counter() - t_start, 3)
        write_json(tmp / provenance.PROVENANCE, provenance.record(fp, cfg, device))
        write_json(tmp / paths.SCORES, scores)
    return scores


def main(cfg: dict, args) -> dict:
    """`fersnet score --db <db> --model <m> --fold <k>`."""
    s = score_job(cfg, args.db, args.model, args.fold, device=getattr(args, "device", None),
                  force=getattr(args, "force", False))
    keys = [k for k in s if k.startswith(("judge_accuracy", "fid_n", "kid_n", "fid_unavailable"))]
    return {k: s[k] for k in ["db", "model", "fold", *keys, "ssim", "psnr", "n_pairs", "seconds"] if k in s}


def _fold_files(cfg: dict, db: str, model: str) -> list[tuple[int, dict, dict]]:
    found = []
    for fold in range(int(cfg["n_folds"])):
        folder = paths.synthesis_dir(cfg, db, model, fold)
        if (folder / paths.SCORES).is_file() and (folder / FEATURES).is_file():
            with np.load(folder / FEATURES) as z:
                feats = {k: z[k] for k in z.files}
            found.append((fold, json.loads((folder / paths.SCORES).read_text()), feats))
    return found


def _fold_mean_std(name: str, values: list) -> dict:
    """`<name>_fold_mean` / `_fold_std` (ddof=1, fersnet.metrics.fold_stats); null when undefined."""
    from fersnet.metrics.fold_stats import mean_std
    s = mean_std(values)
    return {f"{name}_fold_{k}": (s[k] if np.isfinite(s[k]) else None) for k in ("mean", "std")}


def pool_scores(cfg: dict, db: str, model: str) -> dict:
    """Pool one generator's per-fold synthesis over the scored folds (content of synthesis_pooled.json).

    Inception features share one space, so FID/KID are recomputed on all folds' features
    together. Each fold has its own judge, so judge_fid is a mean over folds, not pooled.
    """
    found = _fold_files(cfg, db, model)
    out = {"db": db, "model": model, "seed": int(cfg["seed"]), "folds": [f for f, _, _ in found],
           "n_folds": int(cfg["n_folds"]),
           "complete": len(found) == int(cfg["n_folds"])}
    if not found:
        return dict(out, judge_accuracy=None, fid=None, kid=None, ssim=None, psnr=None, n_pairs=0,
                    fid_unavailable="no fold of this model has been scored (`fersnet score`)")
    classes = found[0][1]["classes"]
    targets = np.concatenate([f["target"] for _, _, f in found])
    pred = np.concatenate([f["judge_pred"] for _, _, f in found])
    out.update(judge_accuracy(pred, targets, classes))
    out.update(_fold_mean_std("judge_accuracy", [s["judge_accuracy"] for _, s, _ in found]))
    ssim_all = np.concatenate([f["per_face_ssim"] for _, _, f in found])
    psnr_all = np.concatenate([f["per_face_psnr"] for _, _, f in found])
    paired = ~np.isnan(ssim_all)
    out.update({"ssim": float(ssim_all[paired].mean()) if paired.any() else None,
                "psnr": float(psnr_all[paired].mean()) if paired.any() else None,
                "n_pairs": int(paired.sum())})
    judge_fids = [s.get("judge_fid") for _, s, _ in found if s.get("judge_fid") is not None]
    out.update(_fold_mean_std("judge_fid", judge_fids))

    m = len(targets)
    out.update({"n_synthetic": int(m), f"fid_n{m}": None, f"kid_n{m}": None, f"kid_n{m}_std": None,
                "fid": None, "kid": None})
    missing = [f for f, _, feats in found if "inception_synthetic" not in feats]
    dims = {s.get("fid_dims") for _, s, _ in found}
    if missing:
        reason = {f: s for f, s, _ in found}[missing[0]].get("fid_unavailable", "")
        out["fid_unavailable"] = f"fold(s) {missing} were scored without Inception features ({reason})"
    elif len(dims) != 1:
        out["fid_unavailable"] = f"folds were scored with different `fid.dims` {sorted(dims)}; re-score them"
    else:
        f_syn = np.concatenate([f["inception_synthetic"] for _, _, f in found]).astype(np.float64)
        f_real = np.concatenate([f["inception_real"] for _, _, f in found]).astype(np.float64)
        fid_value = fidlib.fid_from_features(f_syn, f_real)
        k = fidlib.kid(f_syn, f_real, cfg["fid"]["kid_subset"], cfg["fid"]["kid_subsets"], seed=int(cfg["seed"]))
        out.update({f"fid_n{m}": fid_value, f"kid_n{m}": k["mean"], f"kid_n{m}_std": k["std"],
                    "fid": fid_value, "kid": k["mean"], "kid_std": k["std"], "n_real": int(len(f_real)),
                    "kid_subset_size": k["subset_size"], "kid_subsets": k["n_subsets"],
                    "fid_dims": dims.pop()})
    fp = provenance.fingerprint(cfg, "pool", db, model, None, {
        str(paths.synthesis_dir(cfg, db, model, f) / paths.SCORES): s.get("fingerprint") or "unrecorded"
        for f, s, _ in found})
    out.update(provenance.stamp(fp))
    out["provenance"] = provenance.record(fp, cfg)
    out["per_fold"] = {str(f): {"judge_accuracy": s["judge_accuracy"], "fid": s.get("fid"), "kid": s.get("kid"),
                                "ssim": s.get("ssim"), "psnr": s.get("psnr"), "n_synthetic": s.get("n_synthetic")}
                       for f, s, _ in found}
    return out


def pool_main(cfg: dict, args) -> dict:
    """`fersnet pool --db <db>`: write synthesis_pooled.json for every generator model in params `models`."""
    summary = {}
    for model in catalog.generators(cfg["models"]):
        pooled = pool_scores(cfg, args.db, model)
        path = pooled_path(cfg, args.db, model)
        ownership.create_dirs(path.parent, "fersnet pool")
        ownership.clean_temps(path.parent)
        write_json(path, pooled)
        summary[model] = {"folds": pooled["folds"], "judge_accuracy": pooled["judge_accuracy"],
                          "fid": pooled["fid"], "kid": pooled["kid"]}
    return summary
