"""Shared fixtures: a contract-valid processed database made in memory (docs/architecture.md).

`make_processed` writes data/processed/<db>/ with simple, learnable class patterns so that
model, scoring and report tests do not depend on the synthetic renderer.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """The long tests first (marker `slow`), the workflow runs of Snakemake, DVC and SLURM (minutes
    each) before the rest of them, otherwise in collected order. `make test` schedules with
    `-n 2 --dist load --maxschedchunk 1`: a worker takes the next test when it is free, so the long
    runs start at once on both workers and the short tests fill in around them, instead of a long run
    starting last and ending the suite alone."""
    def rank(item) -> int:
        if item.get_closest_marker("slow") is None:
            return 2
        return 0 if item.path.name in ("test_workflow.py", "test_slurm.py") else 1
    items.sort(key=rank)


def write_processed(folder: Path, db: str = "ckplus", classes=None, n_subjects: int = 20,
                    size: int = 24, channels: int = 1, n_folds: int = 10, seed: int = 0) -> Path:
    """A tiny processed database: each subject shows every class, 3 frames each."""
    import pandas as pd
    from fersnet.data.folds import assign_folds

    classes = classes or ["anger", "disgust", "fear", "happy", "sadness", "surprise"]
    rng = np.random.default_rng(seed)
    subjects = [f"S{100 + 7 * i:03d}" for i in range(n_subjects)]
    folds = assign_folds(subjects, n_folds)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, rows = [], []
    for s_i, subj in enumerate(subjects):
        tone = rng.uniform(80, 170)
        for label, name in enumerate(classes):
            # class pattern: a bright bar whose angle encodes the label, plus subject tone and noise
            ang = np.pi * label / len(classes)
            bar = np.exp(-(((xx - .5) * np.sin(ang) - (yy - .5) * np.cos(ang)) ** 2) / 0.01)
            for frame in range(3):
                img = tone + 70 * bar + rng.normal(0, 12, (size, size))
                img = np.clip(img, 0, 255).astype(np.uint8)[..., None].repeat(channels, -1)
                images.append(img)
                rows.append(dict(subject=subj, sequence=f"{label + 1:03d}", frame=frame, label=label,
                                 expression=name, fold=folds[subj], source=f"{subj}/{label}/{frame}.png",
                                 face="landmarks"))
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", np.stack(images))
    meta = pd.DataFrame(rows)
    meta.to_csv(folder / "meta.csv", index=False)
    counts = meta.groupby(["expression", "fold"]).size().unstack(fill_value=0)
    (folder / "summary.json").write_text(json.dumps({
        "db": db, "classes": classes, "n_images": len(meta), "n_sequences": int(meta[["subject", "sequence"]].drop_duplicates().shape[0]),
        "n_subjects": n_subjects, "counts": counts.to_dict(), "skipped": [], "no_face": [],
        "protocol": {"fixture": True}}))
    return folder


@pytest.fixture
def test_cfg(tmp_path):
    """The `test` profile with every output under tmp_path."""
    from fersnet import config
    cfg = config.load(ROOT / "params.yaml", profile="test")
    cfg["synth"]["out"] = str(tmp_path / "synthetic")
    for db in ("ckplus", "oulu", "mmi"):
        cfg["data"][db]["root"] = str(tmp_path / "synthetic" / db)
    cfg["preprocess"]["out"] = str(tmp_path / "processed")
    cfg["paths"]["results"] = str(tmp_path / "results")
    cfg["paths"]["reports"] = str(tmp_path / "reports")
    cfg["mlflow"]["enabled"] = False
    return cfg


@pytest.fixture
def processed(test_cfg):
    """test_cfg plus a fixture processed database for `ckplus` (6 classes, 20 subjects)."""
    write_processed(Path(test_cfg["preprocess"]["out"]) / "ckplus", size=test_cfg["preprocess"]["size"])
    return test_cfg
