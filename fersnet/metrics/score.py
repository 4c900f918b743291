"""The scoring job: synthesize every test face into every other expression and score it.

    fersnet score --db <db> --model <m> --fold <k>  ->  results/<db>/<m>/fold<k>/synthesis/
        images.npy, index.csv, grid.png, features.npz, scores.json (written last)
    fersnet pool --db <db>  ->  results/<db>/<m>/synthesis_pooled.json (every generator model)

What is compared with what (docs/scoring.md):
- judge accuracy: the fold's judge (trained on real training faces only) on the synthesized
  faces, counted correct when it predicts the target expression;
- FID / KID: pytorch-fid Inception features, per target expression: the synthesized faces of
  target t against the real reference faces of class t (`fid.reference`: the fold's test faces
  or its training faces), then the mean over the expressions (centre crops, as the generators see
  them). Never against the source faces: a source is never of its target's class;
- judge_fid: the same class-conditional Frechet distance on the judge's own penultimate features;
- SSIM / PSNR: each synthesized face against the same subject's real faces of the target.
The same numbers for two reference rows, computed on every fold without a generator:
`copy_input` (the input returned unchanged: no synthesis) and `real_target` (the subject's real
face of the target expression, where it exists: perfect synthesis).
"""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from fersnet import catalog, ownership, paths, provenance
from fersnet.device import resolve as resolve_device
from fersnet.errors import DataError, FersnetError
from fersnet.metrics import fid as fidlib
from fersnet.metrics.common import centre_crop, staged_outputs, to_tensor, to_uint8, write_json
from fersnet.seeds import stream

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
    ok, png = cv2.imencode(Path(path).suffix or ".png", sheet)
    if not ok:
        raise FersnetError(f"{path}: could not encode the synthesis grid")
    Path(path).write_bytes(png.tobytes())    # a full disk raises ENOSPC here (imwrite only returned False)


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


REFERENCE_ROWS = ("copy_input", "real_target")
REFERENCES = ("test", "train")        # `fid.reference`


def reference_faces(cfg: dict, data, train_rows: np.ndarray, faces: np.ndarray,
                    labels: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """The real faces FID/KID and judge FD compare each target expression with, and their labels.

    `fid.reference: test`: the fold's real test faces (`faces`); `train`: its real training faces.
    Either way the reference of class t holds no source of a face synthesized towards t (a source
    is never of its target's expression).
    """
    if cfg["fid"]["reference"] == "test":
        return faces, labels
    return centre_crop(data.images[train_rows], crop), data.meta["label"].to_numpy()[train_rows].astype(int)


def scored_set(cfg: dict, classes: list[str], targets: np.ndarray, pred: np.ndarray, j_syn: np.ndarray,
               j_ref: np.ndarray, ref_labels: np.ndarray, f_syn: np.ndarray | None, f_ref: np.ndarray | None,
               sim: dict) -> dict:
    """The synthesis scores of one set of faces made towards `targets` (a generator's, or a reference
    row's): judge accuracy, class-conditional judge FD and (with Inception features) FID/KID,
    SSIM/PSNR; unsized names (the caller adds the sized ones)."""
    acc = judge_accuracy(pred, targets, classes)
    jfd = fidlib.class_conditional(j_syn, targets, j_ref, ref_labels, classes)
    out = {"n_synthetic": int(len(targets)), **acc,
           "fid": None, "kid": None, "kid_std": None,
           "judge_fid": jfd["fd"], "judge_fid_per_target": jfd["fd_per_target"],
           "ssim": sim["ssim"], "psnr": sim["psnr"], "n_pairs": sim["n_pairs"],
           "n_per_target": jfd["n_per_target"], "classes_used": jfd["classes_used"]}
    if f_syn is not None:
        c = fidlib.class_conditional(f_syn, targets, f_ref, ref_labels, classes, int(cfg["fid"]["kid_subset"]),
                                     int(cfg["fid"]["kid_subsets"]), seed=int(cfg["seed"]))
        out.update({"fid": c["fd"], "kid": c["kid"], "kid_std": c["kid_std"], "fid_per_target": c["fd_per_target"],
                    "kid_per_target": c["kid_per_target"], "kid_subset_size": c["kid_subset_size"],
                    "kid_subsets": int(cfg["fid"]["kid_subsets"])})
    return out


def _sized(entry: dict) -> dict:
    """`fid_n<M>`, `kid_n<M>`, `kid_n<M>_std`, `judge_fid_n<M>` (M synthesized faces) beside the plain keys."""
    m = entry["n_synthetic"]
    return {f"fid_n{m}": entry["fid"], f"kid_n{m}": entry["kid"], f"kid_n{m}_std": entry["kid_std"],
            f"judge_fid_n{m}": entry["judge_fid"]}


def _inception_info(cfg: dict, info: dict | None) -> dict:
    """The Inception entries of scores.json: `fid_dims`, `inception` provenance and any warning."""
    out = {"fid_dims": int(cfg["fid"]["dims"]), "inception": info}
    if info is not None and not info["official"]:
        out["inception_warning"] = (f"weights file {info['file']} is not pytorch-fid's official file "
                                    f"(sha256 {info['sha256'][:8]}..., expected {fidlib.WEIGHTS_SHA256_PREFIX}...); "
                                    "FID/KID are not comparable with published values")
    return out


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
    made_by = ownership.step("score", db, model, f"seed{int(cfg['seed'])}", f"fold{int(fold)}")
    ownership.check_data_roots(cfg, out, "fersnet score")
    ownership.check_replaceable(out, made_by)
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
    from fersnet.metrics.similarity import paired_similarity, real_target_positions

    t_start = time.perf_counter()
    device = str(resolve_device(cfg["train"]["device"], device))     # a torch device string
    torch.set_num_threads(int(cfg["train"]["threads"]))
    torch.manual_seed(stream("score", cfg["seed"], fold))

    data = load_processed(cfg, db)
    train_rows, test_rows = data.split(fold)
    crop = int(cfg["train"]["crop"])
    classes = list(data.classes)
    faces = centre_crop(data.images[test_rows], crop)
    labels = data.meta["label"].to_numpy()[test_rows].astype(int)
    subjects = data.meta["subject"].astype(str).to_numpy()[test_rows]
    ref_faces, ref_labels = reference_faces(cfg, data, train_rows, faces, labels, crop)
    ref_is_test = ref_faces is faces

    judge_dir = paths.judge_dir(cfg, db, fold)
    judge = load_judge(judge_dir, device)
    check_judge_fits(judge, judge_dir, crop, len(classes))
    if generator is None:
        generator = _load_generator(cfg, db, model, fold, device)
    inception, inception_info, fid_reason = open_inception(cfg, device, log)

    sources, targets = synthesis_plan(labels, len(classes))
    synth = synthesize(generator, faces, sources, targets, device)
    logits, j_syn = predict_and_features(judge, synth, device)   # one judge pass: labels and judge_fid features
    pred = logits.argmax(1)
    logits_real, j_real = predict_and_features(judge, faces, device)
    pred_real = logits_real.argmax(1)
    j_ref = j_real if ref_is_test else judge_features(judge, ref_faces, device)

    # The reference rows need no network pass of their own: copying gives the sources' own
    # predictions and features, the real target those of the subject's real target face.
    rt = real_target_positions(subjects, labels, sources, targets)
    has_rt = rt >= 0
    sets = {"generator": (synth, sources, targets, pred, j_syn),
            "copy_input": (faces[sources], sources, targets, pred_real[sources], j_real[sources]),
            "real_target": (faces[rt[has_rt]], sources[has_rt], targets[has_rt], pred_real[rt[has_rt]],
                            j_real[rt[has_rt]])}
    f_real = f_syn = f_ref = None
    t_inception = time.perf_counter()
    if inception is not None:
        bs = int(cfg["fid"]["batch_size"])
        f_real = fidlib.inception_features(inception, faces, bs, device)
        f_syn = fidlib.inception_features(inception, synth, bs, device)
        f_ref = f_real if ref_is_test else fidlib.inception_features(inception, ref_faces, bs, device)
    inception_feats = {"generator": f_syn, "copy_input": None if f_real is None else f_real[sources],
                       "real_target": None if f_real is None else f_real[rt[has_rt]]}
    seconds_inception = round(time.perf_counter() - t_inception, 3)

    entries, per_face = {}, {}
    for name, (images, src, tgt, p, j) in sets.items():
        sim = paired_similarity(images, subjects[src], tgt, faces, subjects, labels)
        entries[name] = scored_set(cfg, classes, tgt, p, j, j_ref, ref_labels, inception_feats[name], f_ref, sim)
        if fid_reason is not None:
            entries[name]["fid_unavailable"] = fid_reason
        # per-face SSIM/PSNR aligned with the M synthesized faces (NaN where a row has no face)
        keep = has_rt if name == "real_target" else np.ones(len(sources), bool)
        for key in ("ssim", "psnr"):
            full = np.full(len(sources), np.nan)
            full[keep] = sim[f"per_face_{key}"]
            per_face[f"per_face_{key}" + ("" if name == "generator" else f"_{name}")] = full
    gen = entries.pop("generator")
    m = len(synth)
    judge_real_acc = json.loads((judge_dir / paths.METRICS).read_text()).get("accuracy")
    scores = {"db": db, "model": model, "fold": int(fold), "classes": classes,
              "n_sources": int(len(faces)), "fid_reference": cfg["fid"]["reference"],
              "n_reference": int(len(ref_labels)), **gen, **_sized(gen),
              "judge_accuracy_real": judge_real_acc, **_inception_info(cfg, inception_info),
              "references": {name: dict(e, **_sized(e)) for name, e in entries.items()},
              "seconds": None, "device": device, **provenance.stamp(fp)}
    if inception is not None:
        scores["seconds_inception"] = seconds_inception
    features_out = {"inception_synthetic": f_syn, "inception_real": f_real, "inception_reference": f_ref}
    features_out = {k: v.astype(np.float32) for k, v in features_out.items() if v is not None}
    with staged_outputs(out, paths.SCORES, made_by) as tmp:
        np.save(tmp / paths.SYNTH_IMAGES, synth)
        with open(tmp / paths.SYNTH_INDEX, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["row", "index", "subject", "source_label", "target_label"])
            for r, (s, t) in enumerate(zip(sources, targets)):
                w.writerow([r, int(test_rows[s]), subjects[s], int(labels[s]), int(t)])
        write_grid(tmp / paths.SYNTH_GRID, faces, labels, synth, sources, targets, classes,
                   f"{db} / {model} / fold {fold}")
        np.savez(tmp / FEATURES, target=targets.astype(np.int64), source=sources.astype(np.int64),
                 real_target=rt, real_label=labels.astype(np.int64), reference_label=ref_labels.astype(np.int64),
                 judge_pred=pred.astype(np.int64), judge_pred_real=pred_real.astype(np.int64),
                 **per_face, **features_out)
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


def _fold_files(cfg: dict, db: str, model: str) -> tuple[list[tuple[int, dict, dict]], list[int]]:
    """The scored folds of (db, model) as (fold, scores.json, features.npz), and the folds scored
    before the class-conditional metrics (no `fid_reference`): those are left out of the pool."""
    found, old = [], []
    for fold in range(int(cfg["n_folds"])):
        folder = paths.synthesis_dir(cfg, db, model, fold)
        if (folder / paths.SCORES).is_file() and (folder / FEATURES).is_file():
            scores = json.loads((folder / paths.SCORES).read_text())
            if "fid_reference" not in scores:
                old.append(fold)
                continue
            with np.load(folder / FEATURES) as z:
                feats = {k: z[k] for k in z.files}
            found.append((fold, scores, feats))
    return found, old


def _fold_mean_std(name: str, values: list) -> dict:
    """`<name>_fold_mean` / `_fold_std` (ddof=1, fersnet.metrics.fold_stats); null when undefined."""
    from fersnet.metrics.fold_stats import mean_std
    s = mean_std(values)
    return {f"{name}_fold_{k}": (s[k] if np.isfinite(s[k]) else None) for k in ("mean", "std")}


def _fold_set(feats: dict, which: str) -> dict:
    """One fold's synthesized set `which` (generator or a reference row) from its features.npz:
    targets, judge predictions, per-face SSIM/PSNR and Inception features (None without them)."""
    target, source, rt = feats["target"], feats["source"], feats["real_target"]
    f_real = feats.get("inception_real")
    suffix = "" if which == "generator" else f"_{which}"
    ssim, psnr = feats[f"per_face_ssim{suffix}"], feats[f"per_face_psnr{suffix}"]
    if which == "generator":
        return dict(target=target, pred=feats["judge_pred"], ssim=ssim, psnr=psnr,
                    inception=feats.get("inception_synthetic"))
    if which == "copy_input":
        return dict(target=target, pred=feats["judge_pred_real"][source], ssim=ssim, psnr=psnr,
                    inception=None if f_real is None else f_real[source])
    keep = rt >= 0
    return dict(target=target[keep], pred=feats["judge_pred_real"][rt[keep]], ssim=ssim[keep], psnr=psnr[keep],
                inception=None if f_real is None else f_real[rt[keep]])


def _pooled_set(cfg: dict, found: list, which: str, classes: list[str]) -> dict:
    """Scores of one synthesized set pooled over the folds: judge accuracy and SSIM/PSNR over all its
    faces, judge FD as a mean over folds (each fold has its own judge), class-conditional FID/KID on
    the Inception features of every fold together (one feature space)."""
    sets = [_fold_set(f, which) for _, _, f in found]
    per_fold = [s if which == "generator" else s["references"][which] for _, s, _ in found]
    targets = np.concatenate([x["target"] for x in sets])
    out = {"n_synthetic": int(len(targets)), **judge_accuracy(np.concatenate([x["pred"] for x in sets]), targets, classes)}
    out.update(_fold_mean_std("judge_accuracy", [e["judge_accuracy"] for e in per_fold]))
    ssim_all = np.concatenate([x["ssim"] for x in sets])
    psnr_all = np.concatenate([x["psnr"] for x in sets])
    paired = ~np.isnan(ssim_all)
    out.update({"ssim": float(ssim_all[paired].mean()) if paired.any() else None,
                "psnr": float(psnr_all[paired].mean()) if paired.any() else None,
                "n_pairs": int(paired.sum())})
    out.update(_fold_mean_std("judge_fid", [e["judge_fid"] for e in per_fold if e.get("judge_fid") is not None]))
    out.update({"fid": None, "kid": None, "kid_std": None})
    missing = [f for (f, _, feats), x in zip(found, sets) if x["inception"] is None or "inception_reference" not in feats]
    dims = {s.get("fid_dims") for _, s, _ in found}
    if missing:
        reason = {f: s for f, s, _ in found}[missing[0]].get("fid_unavailable", "")
        out["fid_unavailable"] = f"fold(s) {missing} were scored without Inception features ({reason})"
    elif len(dims) != 1:
        out["fid_unavailable"] = f"folds were scored with different `fid.dims` {sorted(dims)}; re-score them"
    else:
        f_ref = np.concatenate([f["inception_reference"] for _, _, f in found]).astype(np.float64)
        ref_labels = np.concatenate([f["reference_label"] for _, _, f in found])
        f_syn = np.concatenate([x["inception"] for x in sets]).astype(np.float64)
        c = fidlib.class_conditional(f_syn, targets, f_ref, ref_labels, classes, int(cfg["fid"]["kid_subset"]),
                                     int(cfg["fid"]["kid_subsets"]), seed=int(cfg["seed"]))
        out.update({"fid": c["fd"], "kid": c["kid"], "kid_std": c["kid_std"], "fid_per_target": c["fd_per_target"],
                    "kid_per_target": c["kid_per_target"], "n_per_target": c["n_per_target"],
                    "kid_subset_size": c["kid_subset_size"], "kid_subsets": int(cfg["fid"]["kid_subsets"]),
                    "n_reference": int(len(ref_labels)), "fid_dims": dims.pop()})
    return out


def pool_scores(cfg: dict, db: str, model: str) -> dict:
    """Pool one generator's per-fold synthesis over the scored folds (content of synthesis_pooled.json),
    and the two reference rows (`references`: copy_input, real_target) the same way.

    Inception features share one space, so FID/KID are recomputed per target expression on all
    folds' features together (the reference side: every fold's reference faces). Each fold has its
    own judge, so judge_fid is a mean over folds, not pooled.
    """
    found, old = _fold_files(cfg, db, model)
    out = {"db": db, "model": model, "seed": int(cfg["seed"]), "folds": [f for f, _, _ in found],
           "n_folds": int(cfg["n_folds"]),
           "complete": len(found) == int(cfg["n_folds"])}
    if old:
        out["folds_with_old_metrics"] = old
    if not found:
        why = (f"fold(s) {old} were scored before FID/KID/judge FD became class-conditional; re-score them "
               "(`fersnet score --force`)" if old else "no fold of this model has been scored (`fersnet score`)")
        return dict(out, judge_accuracy=None, fid=None, kid=None, ssim=None, psnr=None, n_pairs=0, fid_unavailable=why)
    classes = found[0][1]["classes"]
    refs = sorted({s["fid_reference"] for _, s, _ in found})
    if len(refs) != 1:
        raise FersnetError(f"{db}/{model}: folds were scored against different `fid.reference` {refs}; "
                           "re-score them with one setting (`fersnet score --force`)")
    out["fid_reference"] = refs[0]
    gen = _pooled_set(cfg, found, "generator", classes)
    out.update(gen)
    m = gen["n_synthetic"]                                 # judge FD is per fold: no pooled value
    out.update({f"fid_n{m}": gen["fid"], f"kid_n{m}": gen["kid"], f"kid_n{m}_std": gen["kid_std"]})
    out["references"] = {r: _pooled_set(cfg, found, r, classes) for r in REFERENCE_ROWS}
    fp = provenance.fingerprint(cfg, "pool", db, model, None, {
        str(paths.synthesis_dir(cfg, db, model, f) / paths.SCORES): s.get("fingerprint") or "unrecorded"
        for f, s, _ in found})
    out.update(provenance.stamp(fp))
    out["provenance"] = provenance.record(fp, cfg)
    out["per_fold"] = {str(f): {"judge_accuracy": s["judge_accuracy"], "fid": s.get("fid"), "kid": s.get("kid"),
                                "judge_fid": s.get("judge_fid"), "ssim": s.get("ssim"), "psnr": s.get("psnr"),
                                "n_synthetic": s.get("n_synthetic")}
                       for f, s, _ in found}
    return out


def pool_main(cfg: dict, args) -> dict:
    """`fersnet pool --db <db>`: write synthesis_pooled.json for every generator model in params `models`."""
    summary = {}
    for model in catalog.generators(cfg["models"]):
        pooled = pool_scores(cfg, args.db, model)
        path = pooled_path(cfg, args.db, model)
        ownership.create_dirs(path.parent, ownership.step("pool", args.db, f"seed{int(cfg['seed'])}"))
        ownership.clean_temps(path.parent)
        write_json(path, pooled)
        summary[model] = {"folds": pooled["folds"], "judge_accuracy": pooled["judge_accuracy"],
                          "fid": pooled["fid"], "kid": pooled["kid"]}
    return summary
