"""The judge: ResNet-18 trained on a fold's real training faces (docs/scoring.md)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from sklearn.metrics import balanced_accuracy_score, f1_score

from fersnet import paths
from fersnet.errors import FersnetError
from fersnet.metrics.common import centre_crop
from fersnet.metrics.judge import build_judge, load_judge, predict, train_judge


def test_judge_at_width_one_is_torchvision_resnet18_with_a_small_image_stem():
    ours = build_judge(in_channels=1, n_classes=6, width=1.0).state_dict()
    ref = torchvision.models.resnet18(weights=None, num_classes=6).state_dict()
    assert set(ours) == set(ref)
    differ = [k for k in ref if ours[k].shape != ref[k].shape]
    assert differ == ["conv1.weight"]                       # 3x3, one input channel
    assert tuple(ours["conv1.weight"].shape) == (64, 1, 3, 3)


def test_judge_trains_on_training_subjects_and_beats_chance_on_real_test_faces(processed):
    cfg = processed
    cfg["judge"]["epochs"] = 2
    m = train_judge(cfg, "ckplus", 0, log=lambda msg: None)
    out = paths.judge_dir(cfg, "ckplus", 0)
    assert {p.name for p in out.iterdir()} >= {"config.json", "checkpoint.pt", "history.csv", "metrics.json"}
    meta = pd.read_csv(paths.processed_dir(cfg, "ckplus") / "meta.csv")
    assert m["n_train"] == int((meta["fold"] != 0).sum()) and m["n_test"] == int((meta["fold"] == 0).sum())
    assert m["accuracy"] > 2 / len(m["classes"])           # chance is 1/6
    assert np.array(m["confusion"]).sum() == m["n_test"]
    assert len(pd.read_csv(out / "history.csv")) == 2

    judge = load_judge(out)
    images = np.load(paths.processed_dir(cfg, "ckplus") / "images.npy")[meta["fold"].to_numpy() == 0]
    pred = predict(judge, centre_crop(images, cfg["train"]["crop"])).argmax(1)
    true = meta.loc[meta["fold"] == 0, "label"].to_numpy()
    assert float((pred == true).mean()) == pytest.approx(m["accuracy"])
    # the class-balanced metrics of metrics.json are scikit-learn's on the same predictions
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(true, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(true, pred, average="macro"))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["arch"]["in_channels"] == 1


def test_judge_is_deterministic_and_a_finished_judge_is_not_retrained(processed):
    cfg = processed
    first = train_judge(cfg, "ckplus", 1, log=lambda msg: None)
    ckpt = paths.judge_dir(cfg, "ckplus", 1) / "checkpoint.pt"
    stamp = ckpt.stat().st_mtime_ns
    again = train_judge(cfg, "ckplus", 1, log=lambda msg: None)
    assert again == first and ckpt.stat().st_mtime_ns == stamp
    other = dict(cfg, paths=dict(cfg["paths"], results=cfg["paths"]["results"] + "_2"))
    second = train_judge(other, "ckplus", 1, log=lambda msg: None)
    a = torch.load(ckpt, weights_only=True)["model"]
    b = torch.load(paths.judge_dir(other, "ckplus", 1) / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert second["confusion"] == first["confusion"]
    times = {p.name: p.stat().st_mtime_ns for p in ckpt.parent.iterdir()}
    assert times["metrics.json"] >= max(times.values())     # written last: its presence means done
    assert json.loads((ckpt.parent / "config.json").read_text())["job"]["fold"] == 1


def test_loading_an_unfinished_judge_names_the_folder_and_the_command(tmp_path):
    with pytest.raises(FersnetError, match="fersnet judge"):
        load_judge(tmp_path / "nojudge")
