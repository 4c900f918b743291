"""`fersnet preprocess`: native layout -> aligned faces, folds and a report (docs/architecture.md).

Reads a database with its reader (fersnet/data/readers), aligns and crops every protocol
frame (CK+ from its landmarks, Oulu-CASIA and MMI with the face detector), assigns the
subject-independent folds and writes `data/processed/<db>/`: images.npy, meta.csv,
summary.json, report.md and contact_sheet.png. Everything is computed in memory first and
written to a temporary sibling folder that is renamed into place, so a failed run leaves
no half-written folder and an existing good one untouched. The raw data is only read.
"""
from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from fersnet import catalog, ownership, paths
from fersnet.data import faces, labels, readers
from fersnet.data.folds import RULE_TEXT, assign_folds
from fersnet.provenance import code_label, code_version, processed_hash, raw_manifest
from fersnet.data.readers import BadFile, BadInput, FrameRecord, Reading
from fersnet.errors import DataError
from fersnet.names import DATABASE

SHEET_PER_CLASS = 8
SHEET_CELL = 64
HOW = "pick another --out (or params preprocess.out), or empty it"
# what a fersnet version without folder markers wrote here (taken over as fersnet's)
EARLIER = (paths.IMAGES, paths.META, paths.PREP_SUMMARY, paths.PREP_REPORT, paths.CONTACT_SHEET)


def main(cfg: dict, args) -> dict:
    """CLI verb: `fersnet preprocess --db <db> [--root DIR] [--out DIR]`."""
    return preprocess(cfg, args.db, root=getattr(args, "root", None), out=getattr(args, "out", None))


def preprocess(cfg: dict, db: str, root=None, out=None) -> dict:
    """Read, align, crop and fold one database; write `out` (default data/processed/<db>/).

    Returns a short summary (counts, skips, the count-check warning, where it was written).
    """
    t0 = time.perf_counter()
    root = Path(root if root is not None else cfg["data"][db]["root"])
    out = Path(out if out is not None else paths.processed_dir(cfg, db))
    _refuse_out_in_root(root, out)
    ownership.check_data_roots(cfg, out, "fersnet preprocess")
    ownership.adopt_earlier(out, EARLIER, EARLIER[:3], ownership.step("preprocess", db))
    ownership.check_replaceable(out, ownership.step("preprocess", db), HOW)   # before the work, not after it
    ownership.clean_temps(out)
    bad = BadInput(cfg["preprocess"]["on_bad_file"])
    manifest = raw_manifest(root)          # before reading: a file changed meanwhile leaves it stale
    reading = readers.read(cfg, db, root, bad)
    if not reading.records:
        raise DataError(f"{root}: no frame of the {DATABASE[db]} protocol found"
                        + (f" ({len(bad.skipped)} bad file(s) skipped, first: {bad.skipped[0]['file']}: "
                           f"{bad.skipped[0]['reason']})" if bad.skipped else "")
                        + f"; see {layout_doc(db)} for the expected layout")
    warning = count_check(cfg, db, root, reading.n_sequences, len(reading.subjects), reading)
    folds = assign_folds(reading.subjects, cfg["n_folds"], cfg["folds"]["rule"])
    images, rows, no_face = _faces(cfg, db, reading, folds, bad)
    if not images:
        unusable = sum(d["kind"] == readers.FACE for d in reading.passed)
        raise DataError(f"{root}: every protocol frame was skipped (bad files: {len(bad.skipped)}, "
                        f"no face: {len(no_face)}, unusable face crops: {unusable}); nothing to write")
    import pandas as pd
    meta = pd.DataFrame(rows, columns=["subject", "sequence", "frame", "label", "expression", "fold",
                                       "source", "face"])
    summary = _summary(cfg, db, root, reading, meta, bad, no_face, warning)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["raw_manifest"] = manifest      # compared with the root's today by `fersnet status`
    summary["code_version"] = code_label(code_version())
    summary["profile"] = cfg.get("profile")    # a profile's run stops over another's (fersnet.status)
    with ownership.build_aside(out, ownership.step("preprocess", db), HOW) as tmp:   # swapped in whole
        _write_outputs(tmp, np.stack(images), meta, summary, reading)
    return {"db": db, "out": str(out), "n_images": summary["n_images"],
            "n_sequences": summary["n_sequences"], "n_subjects": summary["n_subjects"],
            "skipped": len(summary["skipped"]), "no_face": len(no_face),
            "count_warning": warning, "seconds": summary["seconds"]}


def _refuse_out_in_root(root: Path, out: Path) -> None:
    # Renaming the output into place must never replace or add to the raw database.
    r, o = root.resolve(), out.resolve()
    if o == r or o in r.parents or r in o.parents:
        raise DataError(f"{out}: the output folder must lie outside the database root {root} "
                        "(the raw data is never modified)")


def count_check(cfg: dict, db: str, root: Path, n_sequences: int, n_subjects: int,
                reading: Reading | None = None) -> str | None:
    """Compare with the published protocol counts; warn on stderr (or raise) when they differ.

    The message says what the reader passed over, by reason, so that a difference can be traced.
    """
    counts = catalog.database(db).protocol_counts
    if counts is None or (n_sequences, n_subjects) == tuple(counts):
        return None                 # a database defined in params without `counts`: nothing to compare
    want_seq, want_subj = counts
    msg = (f"{DATABASE[db]}: found {n_sequences} protocol sequences from {n_subjects} subjects under "
           f"{readers.shown(root)}; the published protocol has {want_seq} sequences from {want_subj} subjects.")
    if reading is not None and reading.passed:
        msg += f" {_passed_over_counts(reading)}"
    if _is_under(root, Path(cfg["synth"]["out"])):
        msg += (f" The counts differ, as expected for the synthetic stand-in (the root is under "
                f"synth.out = {readers.shown(cfg['synth']['out'])}), which is smaller by design.")
    else:
        msg += (" If this is a copy of the synthetic stand-in, that is expected; otherwise check that the "
                f"root holds the complete database in its native layout ({layout_doc(db)}).")
    if cfg["data"]["check_counts"] == "error":
        raise DataError(msg + " Stopping because data.check_counts is `error`.")
    print(f"WARNING: {msg}", file=sys.stderr)
    return msg


def layout_doc(db: str) -> str:
    """The page that describes database `db`'s layout."""
    from fersnet.data import generic
    return "docs/datasets/generic.md" if catalog.database(db).reader == generic.READER else f"docs/datasets/{db}.md"


def _passed_over_counts(reading: Reading) -> str:
    """One sentence: what the reader passed over, counted by reason (protocol) or kind."""
    parts = [f"{n} x {reason}" for reason, n in reading.excluded.items()]
    for kind, what in ((readers.UNEXPECTED, "unexpected file(s) or folder(s)"),
                       (readers.JUNK, "desktop junk file(s)")):
        files = [d["file"] for d in reading.passed if d["kind"] == kind]
        if files:
            parts.append(f"{len(files)} {what} (first: {files[0]})")
    return "Passed over (listed in report.md): " + "; ".join(parts) + "."


def _is_under(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def _faces(cfg: dict, db: str, reading: Reading, folds: dict, bad: BadInput):
    """Aligned faces and meta rows of every record, sequence by sequence."""
    pp = cfg["preprocess"]
    classes = labels.classes(cfg, db)
    images, rows, no_face = [], [], []
    for _, group in itertools.groupby(reading.records, key=lambda r: (r.subject, r.sequence)):
        loaded = _load(list(group), bad)
        for rec, img, m, how in _crop_sequence(db, loaded, pp, reading):
            if how is None:
                no_face.append({"file": rec.source, "action": "skipped"})
                continue
            problem = faces.outside(img, m, pp["size"], pp["margin"] if how != "center" else 0.0)
            if problem and how == "landmarks":
                problem += ("; its landmarks do not fit this image (landmarks of another image size, "
                            "or points outside the frame)")
            crop = None if problem else faces.warp(img, m, pp["size"])
            problem = problem or faces.blank(crop)
            if problem:
                # listed with the passed-over files; data.check_counts: error stops here (PassedOver)
                reading.pass_over(reading.base / rec.source, problem, readers.FACE)
                continue
            if how == "center":
                no_face.append({"file": rec.source, "action": "center crop"})
            images.append(faces.to_channels(crop, pp["grayscale"]))
            rows.append(dict(subject=rec.subject, sequence=rec.sequence, frame=rec.frame,
                             label=classes.index(rec.expression), expression=rec.expression,
                             fold=folds[rec.subject], source=rec.source, face=how))
    return images, rows, no_face


def _load(records: list[FrameRecord], bad: BadInput) -> list[tuple[FrameRecord, np.ndarray]]:
    out = []
    for rec in records:
        try:
            out.append((rec, rec.load()))
        except BadFile as e:
            bad(e.file, e.reason)
    return out


def _crop_sequence(db: str, loaded, pp: dict, reading: Reading):
    """Yield (record, image, transform to the crop or None, how) for one sequence;
    how in landmarks/detector/center/None."""
    size, margin = pp["size"], pp["margin"]
    if not loaded:
        return
    spec = catalog.database(db)
    if spec.alignment == "landmarks":
        for rec, img in loaded:
            yield rec, img, faces.landmark_transform(rec.landmarks, size, margin), "landmarks"
        return
    recs, imgs = [r for r, _ in loaded], [i for _, i in loaded]
    anchor = reading.anchor(recs[0].subject, recs[0].sequence)
    found = None
    if spec.turned_views:
        extra = [] if anchor is None else [anchor]
        choice, turned, found = faces.frontal_view(imgs + extra, dual=recs[0].view == 2)
        imgs, anchor_box = turned[:len(imgs)], (found[-1] if extra else None)
        found = found[:len(imgs)]
        _note_view(reading, recs[0], choice, any(b is not None for b in found) or anchor_box is not None)
    boxes = faces.detect_sequence(imgs, found)
    if all(box is None for box, _ in boxes) and anchor is not None:
        box = anchor_box if spec.turned_views else faces.find_face(anchor)
        boxes = [(box, box is not None)] * len(imgs)
    reading.borrowed += sum(b for _, b in boxes)
    for rec, img, (box, _) in zip(recs, imgs, boxes):
        if box is not None:
            yield rec, img, faces.box_transform(box, size, margin), "detector"
        elif pp["no_face"] == "center":
            yield rec, img, faces.box_transform(faces.center_box(img), size, 0.0), "center"
        else:
            yield rec, img, None, None


def _note_view(reading: Reading, rec: FrameRecord, choice: str, hits: bool) -> None:
    session = rec.source.split("#")[0]
    if rec.view == 2:
        reading.notes.append(f"{session}: dual view, kept the {choice} half"
                             + ("" if hits else " (no face in either half: left half by default)"))
    elif choice != "none":
        reading.notes.append(f"{session}: stored rotated, turned {choice} (face found after turning)")


def _summary(cfg, db, root, reading, meta, bad, no_face, warning) -> dict:
    classes = labels.classes(cfg, db)
    n_folds = cfg["n_folds"]
    # {fold: {class: n}}, so that pandas.DataFrame(summary["counts"]) is the class x fold table
    # (the same orientation as DataFrame.to_dict() of that table, as in tests/conftest.py)
    counts = {str(k): {c: int(((meta.expression == c) & (meta.fold == k)).sum()) for c in classes}
              for k in range(n_folds)}
    want_seq, want_subj = catalog.database(db).protocol_counts or (None, None)
    return {
        "db": db, "classes": classes, "n_images": int(len(meta)),
        "n_sequences": int(meta[["subject", "sequence"]].drop_duplicates().shape[0]),
        "n_subjects": int(meta.subject.nunique()), "counts": counts,
        "skipped": [dict(d, file=reading.relative(d["file"])) for d in bad.skipped] + reading.passed,
        "no_face": no_face,
        "protocol": _protocol(cfg, db, root, reading),
        "expected_counts": {"sequences": want_seq, "subjects": want_subj},
        "found_counts": {"sequences": reading.n_sequences, "subjects": len(reading.subjects)},
        "count_warning": warning,
        "faces": {k: int(v) for k, v in meta.face.value_counts().items()},
        "borrowed_boxes": reading.borrowed,
        "excluded": dict(reading.excluded), "ignored_files": len(reading.ignored),
        "subjects_per_fold": {str(k): sorted(meta.subject[meta.fold == k].unique().tolist(),
                                             key=readers.natural_key) for k in range(n_folds)},
    }


def _protocol(cfg: dict, db: str, root: Path, reading: Reading) -> dict:
    pp = cfg["preprocess"]
    data = {k: v for k, v in cfg["data"][db].items() if k != "root"}
    spec = catalog.database(db)
    selection = f"{spec.frames} {data['frames']} frames" if data.get("frames") else "every image"
    return {"root": readers.shown(root), "base": readers.shown(reading.base), "selection": selection,
            **data, "alignment": spec.alignment, "size": pp["size"], "margin": pp["margin"],
            "grayscale": pp["grayscale"], "no_face": pp["no_face"], "on_bad_file": pp["on_bad_file"],
            "n_folds": cfg["n_folds"], "folds_rule": cfg["folds"]["rule"],
            "fold_rule": RULE_TEXT[cfg["folds"]["rule"]],
            "check_counts": cfg["data"]["check_counts"]}


def _write_outputs(folder: Path, images: np.ndarray, meta, summary: dict, reading: Reading) -> None:
    import cv2
    np.save(folder / paths.IMAGES, images)
    meta.to_csv(folder / paths.META, index=False)
    summary["data_hash"] = processed_hash(folder)       # read by every job's fingerprint
    (folder / paths.PREP_SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    # names are escaped where they are listed (readers.shown); backslashreplace is the last guard
    (folder / paths.PREP_REPORT).write_text(report_markdown(summary, reading), encoding="utf-8",
                                            errors="backslashreplace")
    ok, png = cv2.imencode(".png", contact_sheet(images, meta, summary))
    if not ok:
        raise DataError(f"{folder / paths.CONTACT_SHEET}: could not be encoded")
    (folder / paths.CONTACT_SHEET).write_bytes(png.tobytes())     # a full disk raises ENOSPC here


def report_markdown(summary: dict, reading: Reading) -> str:
    """report.md: protocol, count check, counts per class x fold, faces, skips and notes."""
    db, classes = summary["db"], summary["classes"]
    folds = sorted(summary["counts"], key=int)
    lines = [f"# Preprocessing report: {DATABASE[db]} (`{db}`)", "",
             f"- root: `{summary['protocol']['root']}`",
             f"- {summary['n_images']} images, {summary['n_sequences']} sequences, "
             f"{summary['n_subjects']} subjects, {len(classes)} classes",
             f"- protocol: " + ", ".join(f"{k} = {v}" for k, v in summary["protocol"].items()
                                          if k not in ("root", "base")),
             f"- time: {summary.get('seconds', 0):.1f} s", "", "## Count check", ""]
    exp, found = summary["expected_counts"], summary["found_counts"]
    lines.append(f"Found {found['sequences']} sequences / {found['subjects']} subjects; "
                 + (f"the published protocol has {exp['sequences']} / {exp['subjects']}."
                    if exp["sequences"] is not None else f"no counts to compare with (params data.{db}.counts)."))
    warning = summary["count_warning"]
    lines += ["", f"**WARNING: {warning}**" if warning else "Counts match." if exp["sequences"] is not None else "", ""]
    lines += ["## Images per class x fold", "",
              "| class | " + " | ".join(folds) + " | total |",
              "|---|" + "---:|" * (len(folds) + 1)]
    for c in classes:
        row = [summary["counts"][k][c] for k in folds]
        lines.append(f"| {c} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    totals = [sum(summary["counts"][k].values()) for k in folds]
    lines.append("| **all** | " + " | ".join(map(str, totals)) + f" | {sum(totals)} |")
    lines += ["", "## Faces", "", ", ".join(f"{k}: {v}" for k, v in summary["faces"].items()), ""]
    if summary["borrowed_boxes"]:
        lines += [f"{summary['borrowed_boxes']} frame(s) without a detection used the box of the nearest "
                  "frame of the same sequence where the detector found the face (or of its first, "
                  "neutral frame when no selected frame had one).", ""]
    lines += _listing("Frames without a detected face", summary["no_face"],
                      lambda d: f"`{d['file']}`: {d['action']}")
    lines += _passed_over(summary["skipped"])
    lines += ["## Notes", ""] + ([f"- {n}" for n in reading.notes] or ["None."]) + [""]
    return "\n".join(lines)


def _passed_over(skipped: list[dict]) -> list[str]:
    """Every file or folder the reader did not use, by name, grouped by kind (readers.BAD ...)."""
    kind = lambda k: [d for d in skipped if d.get("kind", readers.BAD) == k]
    entry = lambda d: f"`{d['file']}`: {d['reason']}"
    lines = _listing("Skipped bad files", kind(readers.BAD), entry,
                     "Files the protocol needs that cannot be used (`preprocess.on_bad_file: skip`).")
    lines += _listing("Unusable face crops", kind(readers.FACE), entry,
                      "Protocol frames whose face region lies mostly outside the image (CK+: landmarks "
                      "that do not fit the image) or whose crop is blank; never kept as faces. "
                      "`data.check_counts: error` stops on these.")
    lines += _listing("Unexpected files and folders", kind(readers.UNEXPECTED), entry,
                      "Not part of the database's layout or naming pattern, so never used (a copy such "
                      "as `name (1).png` is not a frame); `data.check_counts: error` stops on these.")
    protocol = kind(readers.PROTOCOL)
    lines += [f"## Left out by the protocol ({len(protocol)}, not errors)", ""]
    by_reason: dict[str, list[str]] = {}
    for d in protocol:
        by_reason.setdefault(d["reason"], []).append(d["file"])
    for reason, files in by_reason.items():
        lines.append(f"- {reason}: {len(files)}")
        lines += [f"  - `{f}`" for f in files]
    lines += [] if protocol else ["None."]
    lines += [""] + _listing("Desktop junk ignored", kind(readers.JUNK), lambda d: f"`{d['file']}`")
    return lines


def _listing(title: str, items: list, fmt, intro: str | None = None) -> list[str]:
    lines = [f"## {title} ({len(items)})", ""] + ([intro, ""] if intro and items else [])
    lines += [f"- {fmt(d)}" for d in items] or ["None."]
    return lines + [""]


def contact_sheet(images: np.ndarray, meta, summary: dict) -> np.ndarray:
    """A BGR sheet: one row per class, up to SHEET_PER_CLASS faces of distinct subjects.

    Centre-cropped faces (no face found) get a red frame, so misses stand out.
    """
    import cv2
    classes, cell, label_w = summary["classes"], SHEET_CELL, 120
    sheet = np.full((24 + cell * len(classes), label_w + cell * SHEET_PER_CLASS, 3), 255, np.uint8)
    cv2.putText(sheet, f"{DATABASE[summary['db']]}: {summary['n_images']} faces, red = centre crop",
                (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for r, c in enumerate(classes):
        y = 24 + r * cell
        rows = meta.index[meta.expression == c]
        cv2.putText(sheet, f"{c} ({len(rows)})", (4, y + cell // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
        for col, i in enumerate(_sample_rows(meta, rows)):
            face = images[i]
            code = cv2.COLOR_GRAY2BGR if face.shape[-1] == 1 else cv2.COLOR_RGB2BGR
            face = cv2.cvtColor(face, code)
            face = cv2.resize(face, (cell - 2, cell - 2), interpolation=cv2.INTER_CUBIC)
            x = label_w + col * cell
            sheet[y + 1:y + cell - 1, x + 1:x + cell - 1] = face
            if meta.face[i] == "center":
                cv2.rectangle(sheet, (x + 1, y + 1), (x + cell - 2, y + cell - 2), (0, 0, 255), 2)
    return sheet


def _sample_rows(meta, rows) -> list[int]:
    # one face per subject (its last, apex-most, frame of the class), spread over the subjects
    last = meta.loc[rows].drop_duplicates("subject", keep="last").index.tolist()
    if len(last) <= SHEET_PER_CLASS:
        return last
    picks = np.linspace(0, len(last) - 1, SHEET_PER_CLASS).round().astype(int)
    return [last[p] for p in picks]
