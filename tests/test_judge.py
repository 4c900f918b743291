"""The judge: ResNet-18 trained on a fold's real training faces (docs/scoring.md)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from sklearn.metrics import balanced_accuracy_score, f1_score

from fersnet import config, paths
from fersnet.config import ConfigError
from fersnet.errors import FersnetError
from fersnet.metrics.common import centre_crop, to_tensor
from fersnet.metrics.judge import (_augment, build_judge, features, load_judge, predict, predict_and_features,
                                   train_judge)

from conftest import ROOT


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
    history = (out / "history.csv").read_bytes()                 # written like a model's history.csv
    assert history.startswith(b"epoch,loss,train_acc,lr,seconds\n") and b"\r" not in history
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


def test_batched_augmentation_draws_and_crops_exactly_like_the_per_image_loop():
    batch = torch.rand(9, 2, 12, 14)
    got = _augment(batch, 8, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)                  # the former per-image crop + flip
    tops = torch.randint(0, 12 - 8 + 1, (9,), generator=gen).tolist()
    lefts = torch.randint(0, 14 - 8 + 1, (9,), generator=gen).tolist()
    flips = torch.rand(9, generator=gen).lt(0.5).tolist()
    ref = torch.stack([(img[:, t:t + 8, l:l + 8].flip(-1) if f else img[:, t:t + 8, l:l + 8])
                       for img, t, l, f in zip(batch, tops, lefts, flips)])
    assert any(flips) and not all(flips)
    assert torch.equal(got, ref)


def test_one_cycle_label_smoothing_and_flip_averaging_at_tiny_scale(processed):
    cfg = processed
    cfg["judge"].update(epochs=3, schedule="onecycle", label_smoothing=0.2, tta_flip=True)
    m = train_judge(cfg, "ckplus", 2, log=lambda msg: None)
    out = paths.judge_dir(cfg, "ckplus", 2)
    lrs = pd.read_csv(out / "history.csv")["lr"].to_numpy()
    # OneCycleLR: up to judge.lr in the first 30 % of the steps, down to lr / 25 / 1e4 at the last one
    assert lrs[0] > lrs[-1] and lrs[-1] == pytest.approx(cfg["judge"]["lr"] / 25 / 1e4, rel=1e-6)
    assert m["accuracy"] > 2 / len(m["classes"])

    judge = load_judge(out)
    assert judge.tta_flip is True
    meta = pd.read_csv(paths.processed_dir(cfg, "ckplus") / "meta.csv")
    images = np.load(paths.processed_dir(cfg, "ckplus") / "images.npy")[meta["fold"].to_numpy() == 2]
    faces = centre_crop(images, cfg["train"]["crop"])
    x = to_tensor(faces)
    with torch.no_grad():
        expected = ((judge(x) + judge(x.flip(-1))) / 2).numpy()
        plain = judge(x).numpy()
    logits = predict(judge, faces)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits, plain)                    # the mirror image does count
    true = meta.loc[meta["fold"] == 2, "label"].to_numpy()
    assert float((logits.argmax(1) == true).mean()) == pytest.approx(m["accuracy"])
    # one pass gives the scoring job both: the same logits and the plain (unmirrored) features
    lg, ft = predict_and_features(judge, faces)
    np.testing.assert_array_equal(lg, logits)
    np.testing.assert_array_equal(ft, features(judge, faces))


def test_constant_schedule_without_smoothing_or_flip_is_the_plain_recipe(processed):
    cfg = processed
    cfg["judge"].update(epochs=2, schedule="constant", label_smoothing=0.0, tta_flip=False)
    train_judge(cfg, "ckplus", 3, log=lambda msg: None)
    out = paths.judge_dir(cfg, "ckplus", 3)
    assert (pd.read_csv(out / "history.csv")["lr"] == cfg["judge"]["lr"]).all()
    judge = load_judge(out)
    assert judge.tta_flip is False
    faces = np.random.default_rng(0).integers(0, 256, (5, cfg["train"]["crop"], cfg["train"]["crop"], 1), np.uint8)
    with torch.no_grad():
        np.testing.assert_allclose(predict(judge, faces), judge(to_tensor(faces)).numpy(), rtol=1e-6)


@pytest.mark.parametrize("key, value, words", [
    ("schedule", "cosine", "constant, onecycle"),
    ("label_smoothing", 0.7, "judge.label_smoothing"),
    ("label_smoothing", -0.1, "judge.label_smoothing"),
    ("tta_flip", "yes", "judge.tta_flip"),
])
def test_judge_options_are_validated(key, value, words):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["judge"][key] = value
    with pytest.raises(ConfigError) as e:
        config.resolve(raw)
    assert words in str(e.value)


def test_min_steps_raises_the_judges_epochs_to_reach_them(processed):
    from fersnet.metrics.judge import judge_epochs
    assert judge_epochs({"epochs": 8, "batch_size": 16, "min_steps": 480}, 250) == 30    # 16 steps per epoch
    assert judge_epochs({"epochs": 8, "batch_size": 16, "min_steps": 480}, 241) == 32    # 15 steps: a 1-face batch is no step
    assert judge_epochs({"epochs": 8, "batch_size": 16, "min_steps": None}, 250) == 8
    assert judge_epochs({"epochs": 40, "batch_size": 16, "min_steps": 480}, 250) == 40
    cfg = processed
    cfg["judge"].update(epochs=1, min_steps=3, batch_size=4000)      # one step per epoch -> 3 epochs
    m = train_judge(cfg, "ckplus", 4, log=lambda msg: None)
    history = pd.read_csv(paths.judge_dir(cfg, "ckplus", 4) / "history.csv")
    assert m["epochs"] == len(history) == 3


@pytest.mark.parametrize("n, batch_size", [(0, 4), (1, 4), (9, 4), (8, 4), (17, 8), (6, 16), (33, 16)])
def test_the_judges_step_count_is_the_number_of_batches_its_epochs_yield(n, batch_size):
    from fersnet.metrics.judge import JudgeEpochs
    source = JudgeEpochs(torch.rand(n, 1, 6, 6), torch.arange(n), batch_size, 4, torch.Generator().manual_seed(0))
    batches = list(source.batches(1))
    assert source.steps == len(batches)
    assert all(2 <= len(b["x"]) <= batch_size and b["x"].shape[1:] == (1, 4, 4) for b in batches)
    used = torch.cat([b["y"] for b in batches]) if batches else torch.zeros(0, dtype=torch.long)
    assert len(set(used.tolist())) == len(used) == (n - 1 if n % batch_size == 1 else n)  # only a 1-face batch left out


def test_the_judges_epoch_row_is_the_mean_over_faces_not_over_steps():
    from fersnet.training.loop import SampleMeans, StepMeans
    steps = [({"loss": torch.tensor(1.0), "train_acc": torch.tensor(1)}, {"x": torch.zeros(3)}),
             ({"loss": torch.tensor(2.0), "train_acc": torch.tensor(2)}, {"x": torch.zeros(2)})]
    faces, per_step = SampleMeans(), StepMeans()
    for out, batch in steps:
        faces.add(out, batch)
        per_step.add({"loss": out["loss"]}, batch)
    assert faces.means() == {"loss": (3 * 1.0 + 2 * 2.0) / 5, "train_acc": 3 / 5}
    assert per_step.means() == {"loss": 1.5}
