"""Scoring synthesis: judge accuracy, paired similarity, the score job and pooling over folds."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import write_processed
from fersnet import paths
from fersnet.errors import FersnetError
from fersnet.metrics import fid as fidlib
from fersnet.metrics.judge import train_judge
from fersnet.metrics.score import judge_accuracy, pool_main, pooled_path, score_job, synthesis_plan
from fersnet.metrics.similarity import paired_similarity, psnr, ssim

THREE = ["happy", "sadness", "surprise"]
QUIET = {"log": lambda msg: None}


@pytest.fixture
def small(test_cfg, tmp_path, monkeypatch):
    """10 subjects x 3 classes (one test subject per fold), a trained judge for fold 0 and a
    torch hub folder without Inception weights."""
    write_processed(Path(test_cfg["preprocess"]["out"]) / "ckplus", classes=THREE, n_subjects=10,
                    size=test_cfg["preprocess"]["size"])
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    test_cfg["judge"]["epochs"] = 3
    train_judge(test_cfg, "ckplus", 0, **QUIET)
    return test_cfg


def class_mean_generator(cfg):
    """Stand-in generator: the mean real training face of the target class (ignores the input)."""
    images = np.load(paths.processed_dir(cfg, "ckplus") / "images.npy").astype(np.float32) / 255
    meta = pd.read_csv(paths.processed_dir(cfg, "ckplus") / "meta.csv")
    crop, size = cfg["train"]["crop"], images.shape[1]
    o = (size - crop) // 2
    means = torch.stack([torch.from_numpy(images[(meta["label"] == k).to_numpy(), o:o + crop, o:o + crop].mean(0))
                         for k in range(meta["label"].max() + 1)]).permute(0, 3, 1, 2)
    return lambda x, t: means[t.cpu()].to(x.device)


def other_subject_generator(cfg, fold: int):
    """Stand-in that clearly synthesizes: a real training face of the target class, of another subject
    than the input's (training and test subjects are disjoint), cycling through that class's faces,
    shifted to the input's mean brightness (the fixture's subjects differ mostly in skin tone)."""
    from fersnet.data.dataset import load_processed
    from fersnet.metrics.common import centre_crop, to_tensor
    data = load_processed(cfg, "ckplus")
    train_rows, _ = data.split(fold)
    faces = centre_crop(data.images[train_rows], cfg["train"]["crop"])
    labels = data.meta["label"].to_numpy()[train_rows]
    bank = [to_tensor(faces[labels == k]) for k in range(labels.max() + 1)]
    def generate(x, t):
        faces = torch.stack([bank[int(k)][i % len(bank[int(k)])] for i, k in enumerate(t.cpu())]).to(x.device)
        return (faces - faces.mean((1, 2, 3), keepdim=True) + x.mean((1, 2, 3), keepdim=True)).clamp(0, 1)
    return generate


def random_inception(cfg, tmp_path):
    """FID/KID on: a weights file of pytorch-fid's architecture with random weights (the official file
    is not on an offline machine)."""
    weights = tmp_path / "fid_inception_random.pth"
    torch.manual_seed(0)
    torch.save(fidlib.fid_inception_architecture().state_dict(), weights)
    cfg["fid"]["inception_weights"] = str(weights)
    cfg["fid"]["require_inception"] = True
    cfg["fid"]["kid_subsets"] = 5


def test_judge_accuracy_counts_predictions_equal_to_the_target():
    pred = np.array([0, 1, 2, 2, 0, 1])
    target = np.array([0, 1, 1, 2, 2, 1])
    out = judge_accuracy(pred, target, ["anger", "happy", "fear", "sadness"])
    assert out["judge_accuracy"] == pytest.approx(4 / 6)
    assert out["judge_accuracy_per_target"] == {"anger": 1.0, "happy": pytest.approx(2 / 3),
                                                "fear": 0.5, "sadness": None}


def test_synthesis_plan_makes_every_target_except_the_source_expression():
    src, tgt = synthesis_plan(np.array([0, 2, 1]), 3)
    assert list(zip(src.tolist(), tgt.tolist())) == [(0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 2)]


def test_ssim_and_psnr_equal_scikit_image_on_the_same_pair():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (20, 20, 1), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, b) == pytest.approx(structural_similarity(a[..., 0], b[..., 0], data_range=255))
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255))
    c, d = np.repeat(a, 3, -1), np.repeat(b, 3, -1)
    assert ssim(c, d) == pytest.approx(structural_similarity(c, d, data_range=255, channel_axis=-1))


def test_paired_similarity_compares_only_with_the_same_subjects_real_target_faces():
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
    synth = np.stack([real[1], real[0]])          # S1 -> label 1 is exact; S2 has no label-0 face
    out = paired_similarity(synth, ["S1", "S2"], [1, 0], real, ["S1", "S1", "S2"], [0, 1, 1])
    assert out["n_pairs"] == 1
    assert out["ssim"] == pytest.approx(1.0) and out["psnr"] == 100.0
    assert np.isnan(out["per_face_ssim"][1])


def test_score_job_writes_the_contract_files_and_records_fid_as_unavailable(small):
    cfg = small
    scores = score_job(cfg, "ckplus", "fersnet", 0, generator=class_mean_generator(cfg), **QUIET)
    out = paths.synthesis_dir(cfg, "ckplus", "fersnet", 0)
    crop = cfg["train"]["crop"]
    images = np.load(out / "images.npy")
    index = pd.read_csv(out / "index.csv")
    assert images.dtype == np.uint8 and images.shape == (18, crop, crop, 1)     # 9 faces x 2 targets
    assert list(index.columns) == ["row", "index", "subject", "source_label", "target_label"]
    assert (index["source_label"] != index["target_label"]).all()
    assert (out / "grid.png").stat().st_size > 1000
    on_disk = json.loads((out / "scores.json").read_text())
    assert on_disk == scores
    assert scores["fid_n18"] is None and scores["kid_n18"] is None and scores["fid"] is None
    assert "fid.inception_weights" in scores["fid_unavailable"]
    # class means of the real faces are what the judge learned to recognize
    assert scores["judge_accuracy"] > 0.5
    assert scores["n_pairs"] == 18 and 0 < scores["ssim"] <= 1
    assert scores["judge_fid_n18"] >= 0
    # a finished job is not redone
    stamp = (out / "images.npy").stat().st_mtime_ns
    assert score_job(cfg, "ckplus", "fersnet", 0, generator=lambda x, t: x, **QUIET) == scores
    assert (out / "images.npy").stat().st_mtime_ns == stamp


def test_copying_the_input_loses_to_synthesis_on_class_conditional_judge_fd_and_to_the_real_target_on_fid_kid(
        small, tmp_path):
    """A generator that returns its input against one that returns a real face of the target class
    (of another subject). The copy-input reference row of scores.json is exactly what copying scores;
    the real-target row (the subject's own real target face) beats copying on FID, KID and judge FD.

    FID/KID run here on pytorch-fid's network with random weights (the official file is not on an
    offline machine): such features follow brightness and texture, not expressions, so the stand-in's
    FID/KID are not compared with copying's; test_fid shows the class-conditional distance on features
    that do separate expressions."""
    cfg = small
    random_inception(cfg, tmp_path)
    copy = score_job(cfg, "ckplus", "stargan", 0, generator=lambda x, t: x, **QUIET)
    synth = score_job(cfg, "ckplus", "fersnet", 0, generator=other_subject_generator(cfg, 0), **QUIET)
    assert synth["judge_fid"] < copy["judge_fid"] / 4
    assert synth["judge_accuracy"] > copy["judge_accuracy"] + 0.5
    for key in ("fid", "kid", "judge_fid"):
        assert synth["references"]["copy_input"][key] == pytest.approx(copy[key]), key
        assert synth["references"]["real_target"][key] < copy[key] / 2, key
    assert copy["ssim"] == pytest.approx(synth["references"]["copy_input"]["ssim"])
    # every synthesized face is compared with real faces of its target, never with its source's expression
    feats = np.load(paths.synthesis_dir(cfg, "ckplus", "fersnet", 0) / "features.npz")
    assert (feats["real_label"][feats["source"]] != feats["target"]).all()
    assert synth["fid_reference"] == "test" and synth["n_reference"] == 9


@pytest.mark.slow
def test_copying_the_input_loses_to_a_trained_fersnet_on_class_conditional_judge_fd(small):
    """FERSNet trained for 12 epochs at the test profile's scale (~120 steps; at its 1 epoch the
    generator still returns about its input) makes faces the judge places nearer the target
    expression than the input: lower class-conditional judge FD than the copy-input row."""
    from fersnet.training.train import train_job
    cfg = small
    cfg["train"]["epochs"] = 12
    train_job(cfg, "ckplus", "fersnet", 0)
    scores = score_job(cfg, "ckplus", "fersnet", 0, **QUIET)
    copy, real = scores["references"]["copy_input"], scores["references"]["real_target"]
    assert real["judge_fid"] < scores["judge_fid"] < copy["judge_fid"] / 2
    assert scores["judge_accuracy"] > copy["judge_accuracy"]


def test_training_faces_as_reference_hold_every_training_face_and_copying_still_loses(small):
    cfg = small
    cfg["fid"]["reference"] = "train"
    copy = score_job(cfg, "ckplus", "stargan", 0, generator=lambda x, t: x, **QUIET)
    synth = score_job(cfg, "ckplus", "fersnet", 0, generator=other_subject_generator(cfg, 0), **QUIET)
    assert synth["fid_reference"] == "train" and synth["n_reference"] == 81      # 9 training subjects x 9 faces
    assert synth["n_per_target"]["happy"] == {"synthetic": 6, "reference": 27}
    assert synth["judge_fid"] < copy["judge_fid"]
    assert copy["judge_fid"] == pytest.approx(synth["references"]["copy_input"]["judge_fid"])


def test_required_but_missing_inception_is_a_clear_error_and_writes_nothing(small):
    cfg = small
    cfg["fid"]["require_inception"] = True
    with pytest.raises(FersnetError, match="require_inception"):
        score_job(cfg, "ckplus", "fersnet", 0, generator=lambda x, t: x, **QUIET)
    out = paths.synthesis_dir(cfg, "ckplus", "fersnet", 0)
    assert not (out / "scores.json").exists() and not (out / "images.npy").exists()


def test_local_weights_give_fid_kid_per_fold_and_pooled_over_folds(small, tmp_path):
    cfg = small
    random_inception(cfg, tmp_path)
    cfg["models"] = ["fersnet"]
    train_judge(cfg, "ckplus", 1, **QUIET)
    per_fold = [score_job(cfg, "ckplus", "fersnet", k, generator=class_mean_generator(cfg), **QUIET)
                for k in (0, 1)]
    for s in per_fold:
        assert s["fid_n18"] == s["fid"] and s["fid"] >= 0 and "fid_unavailable" not in s
        # per target: 6 synthesized faces against the 3 real test faces of that class
        assert s["kid_subset_size"] == 3 and s["inception"]["source"] == "local"
        assert s["n_per_target"] == {c: {"synthetic": 6, "reference": 3} for c in THREE}
        assert s["fid"] == pytest.approx(np.mean(list(s["fid_per_target"].values())))
        assert "inception_warning" in s                      # random weights are not the official file
    pool_main(cfg, SimpleNamespace(db="ckplus"))
    pooled = json.loads(pooled_path(cfg, "ckplus", "fersnet").read_text())
    assert pooled["folds"] == [0, 1] and pooled["complete"] is False
    assert pooled["n_synthetic"] == 36 and pooled["fid_n36"] == pooled["fid"] >= 0
    feats = [np.load(paths.synthesis_dir(cfg, "ckplus", "fersnet", k) / "features.npz") for k in (0, 1)]
    syn = np.concatenate([f["inception_synthetic"] for f in feats]).astype(float)
    ref = np.concatenate([f["inception_real"] for f in feats]).astype(float)    # fid.reference: test
    target = np.concatenate([f["target"] for f in feats])
    label = np.concatenate([f["real_label"] for f in feats])
    expect = np.mean([fidlib.fid_from_features(syn[target == k], ref[label == k]) for k in range(3)])
    assert pooled["fid"] == pytest.approx(expect)
    copy = pooled["references"]["copy_input"]
    copied = np.concatenate([f["inception_real"][f["source"]] for f in feats]).astype(float)   # the inputs
    assert copy["fid"] == pytest.approx(np.mean([fidlib.fid_from_features(copied[target == k], ref[label == k])
                                                 for k in range(3)]))
    assert pooled["judge_accuracy"] == pytest.approx(np.mean([s["judge_accuracy"] for s in per_fold]))
    # each fold has its own judge: judge FD over folds is a mean and sample std (ddof=1)
    assert pooled["judge_fid_fold_std"] == pytest.approx(np.std([s["judge_fid"] for s in per_fold], ddof=1))


def test_score_job_uses_the_trained_generator_of_the_run_folder(small):
    from fersnet.training.train import train_job
    cfg = small
    with pytest.raises(FersnetError, match="fersnet train"):
        score_job(cfg, "ckplus", "stargan", 0, **QUIET)
    train_job(cfg, "ckplus", "fersnet", 0)
    scores = score_job(cfg, "ckplus", "fersnet", 0, **QUIET)
    images = np.load(paths.synthesis_dir(cfg, "ckplus", "fersnet", 0) / "images.npy")
    assert scores["n_synthetic"] == len(images) == 18
    assert 0 <= scores["judge_accuracy"] <= 1


def test_grid_has_one_row_per_source_class_and_the_synthesized_faces_in_their_cells(tmp_path):
    import cv2

    from fersnet.metrics.score import GRID_CELL, write_grid
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    labels = np.array([0, 1, 1, 2, 0])
    sources, targets = synthesis_plan(labels, 3)
    synth = rng.integers(0, 256, (len(sources), 8, 8, 1), dtype=np.uint8)
    write_grid(tmp_path / "grid.png", faces, labels, synth, sources, targets, ["anger", "happy", "surprise"], "t")
    img = cv2.imread(str(tmp_path / "grid.png"), cv2.IMREAD_GRAYSCALE)
    cell, gap, left, top = GRID_CELL, 6, 86, 44
    assert img.shape == (top + 3 * (cell + gap), left + 4 * (cell + gap))
    # row 1 = the first happy face (index 1); its own column (happy, col 2) is empty, col 3 is -> surprise
    y = top + 1 * (cell + gap)
    assert (img[y:y + cell, left + 2 * (cell + gap):][:, :cell] == 220).all()
    i = int(np.flatnonzero((sources == 1) & (targets == 2))[0])
    x = left + 3 * (cell + gap)
    expect = cv2.resize(synth[i, ..., 0], (cell, cell), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(img[y:y + cell, x:x + cell], expect)
    np.testing.assert_array_equal(img[y:y + cell, left:left + cell],
                                  cv2.resize(faces[1, ..., 0], (cell, cell), interpolation=cv2.INTER_NEAREST))
