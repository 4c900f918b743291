"""The training job: contract files, determinism, exact resume, NaN guard, selection, FES-DA, generators."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import write_processed
from fersnet import paths
from fersnet.errors import TrainingError
from fersnet.training import batches as B
from fersnet.training.loop import Hooks
from fersnet.training.train import train_job

VOLATILE = ("seconds",)


@pytest.fixture
def tiny(test_cfg):
    """test profile on a 10-subject fixture database (6 classes), 2 short epochs."""
    write_processed(Path(test_cfg["preprocess"]["out"]) / "ckplus", n_subjects=10, size=24)
    cfg = copy.deepcopy(test_cfg)
    cfg["train"].update(crop=16, batch_size=32, epochs=2)
    return cfg


def _stable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


def _history(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / paths.HISTORY).drop(columns=["seconds"])


def test_device_batches_equal_per_item_dataloader_batches():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 10, 10, 1), dtype=np.uint8)
    labels = np.repeat(np.arange(3), 4)
    subjects = np.tile(["a", "b", "c", "d"], 3)
    data = B.DeviceData.from_arrays(images, labels, subjects, "cpu")
    pairs = B.PairIndex.build(data, np.arange(12))
    plan = B.make_plan(pairs, data.labels_cpu, 3, 10, 6, torch.Generator().manual_seed(1))
    fast = list(B.DeviceBatcher(data, 6, 4).batches(plan))
    loader = torch.utils.data.DataLoader(B.PlanDataset(images, plan, 6), batch_size=4, drop_last=True)
    slow = list(loader)
    assert len(fast) == len(slow) == 3
    for a, b in zip(fast, slow):
        for key in ("x", "xt", "s", "t", "has_t"):
            torch.testing.assert_close(a[key], b[key])
    assert bool(plan.flip.any()) and not bool(plan.flip.all())


def test_pairs_are_the_same_subject_with_another_expression():
    labels = np.array([0, 1, 2, 0, 1, 0])
    subjects = np.array(["a", "a", "a", "b", "b", "c"])     # c has a single expression
    data = B.DeviceData.from_arrays(np.zeros((6, 4, 4, 1), np.uint8), labels, subjects, "cpu")
    pairs = B.PairIndex.build(data, np.arange(6))
    for seed in range(5):
        plan = B.make_plan(pairs, labels, 3, 4, 4, torch.Generator().manual_seed(seed))
        for src, tgt, s, t, has in zip(plan.src, plan.tgt, plan.s, plan.t, plan.has_t):
            assert int(t) != int(s)
            if bool(has):
                assert subjects[int(tgt)] == subjects[int(src)] and labels[int(tgt)] == int(t)
            else:
                assert subjects[int(src)] == "c"


def test_train_job_writes_the_contract_files(tiny):
    metrics = train_job(tiny, "ckplus", "fersnet", 0)
    run = paths.run_dir(tiny, "ckplus", "fersnet", 0)
    for name in (paths.CONFIG, paths.CHECKPOINT, paths.HISTORY, paths.PREDICTIONS, paths.METRICS):
        assert (run / name).is_file(), name
    assert json.loads((run / paths.METRICS).read_text()) == metrics
    for key in ("db", "model", "fold", "classes", "accuracy", "balanced_accuracy", "macro_f1",
                "per_class_recall", "confusion", "n_test",
                "selected_epoch", "selection", "best_epoch_test_accuracy", "best_epoch", "epochs", "seconds", "device"):
        assert key in metrics, key
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["epochs"] == 2 and metrics["selected_epoch"] == 2
    assert sum(map(sum, metrics["confusion"])) == metrics["n_test"]
    hist = pd.read_csv(run / paths.HISTORY)
    assert list(hist["epoch"]) == [1, 2]
    for col in ("C/loss_ce", "G/loss_adv", "G/loss_l1", "G/loss_cyc", "D/loss", "train_acc",
                "test_acc_diagnostic", "gate/fer_z_l1", "gate/fes_r_l3", "lr", "seconds"):
        assert col in hist.columns, col
    preds = pd.read_csv(run / paths.PREDICTIONS)
    assert list(preds.columns[:4]) == ["index", "subject", "true", "pred"] and len(preds) == metrics["n_test"]
    assert np.allclose(preds.filter(like="prob_").sum(axis=1), 1.0, atol=1e-4)
    # accuracy, balanced accuracy, macro-F1 and the confusion are scikit-learn's on predictions.csv
    from sklearn import metrics as skm
    assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(preds["true"], preds["pred"]))
    assert metrics["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(preds["true"], preds["pred"]))
    assert metrics["macro_f1"] == pytest.approx(skm.f1_score(preds["true"], preds["pred"], average="macro"))
    labels = list(range(len(metrics["classes"])))
    assert metrics["confusion"] == skm.confusion_matrix(preds["true"], preds["pred"], labels=labels).tolist()
    job = json.loads((run / paths.CONFIG).read_text())["job"]
    assert job["db"] == "ckplus" and job["model"] == "fersnet" and job["fold"] == 0 and "git_commit" in job


def test_min_steps_raises_the_epochs_to_reach_a_step_budget(tiny):
    from fersnet.training.train import train_epochs
    tr = {"epochs": 5, "min_steps": 240, "batch_size": 16}
    assert train_epochs(tr, 261) == 15          # CK+ stand-in: 16 batches per epoch
    assert train_epochs(tr, 156) == 27          # MMI stand-in: 9 batches per epoch
    assert train_epochs({**tr, "min_steps": 40}, 261) == 5      # never fewer than `epochs`
    assert train_epochs({**tr, "min_steps": None}, 156) == 5
    cfg = copy.deepcopy(tiny)
    cfg["train"].update(epochs=1, min_steps=5)
    metrics = train_job(cfg, "ckplus", "fersnet", 0)
    run = paths.run_dir(cfg, "ckplus", "fersnet", 0)
    per_epoch = metrics["steps"] // metrics["epochs"]
    assert metrics["epochs"] == -(-5 // per_epoch) and metrics["steps"] >= 5
    assert list(pd.read_csv(run / paths.HISTORY)["epoch"]) == list(range(1, metrics["epochs"] + 1))


def test_checkpoint_round_trips_with_weights_only(tiny):
    from fersnet.models import registry
    train_job(tiny, "ckplus", "no_convflu", 1)
    ckpt = torch.load(paths.run_dir(tiny, "ckplus", "no_convflu", 1) / paths.CHECKPOINT, weights_only=True)
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2
    task = registry.build("no_convflu", tiny, ckpt["meta"]["n_classes"], ckpt["meta"]["channels"])
    task.load_state_dict(ckpt["model"])
    for key, opt in task.optimizers.items():
        opt.load_state_dict(ckpt["optimizers"][key])
    torch.testing.assert_close(task.state_dict()["gen.head.fc.weight"], ckpt["model"]["gen.head.fc.weight"])


def test_same_seed_gives_identical_metrics(tiny, tmp_path):
    cfg = copy.deepcopy(tiny)
    cfg["train"]["lambda_expr"] = 0.1          # every loss term on
    a = train_job(cfg, "ckplus", "fersnet", 0, out=tmp_path / "a")
    b = train_job(cfg, "ckplus", "fersnet", 0, out=tmp_path / "b")
    assert _stable(a) == _stable(b)
    pd.testing.assert_frame_equal(_history(tmp_path / "a"), _history(tmp_path / "b"))
    assert "G/loss_expr" in _history(tmp_path / "a").columns


class Killed(Exception):
    pass


def _kill_after(epoch_to_kill):
    def after_epoch(epoch):
        if epoch == epoch_to_kill:
            raise Killed
    return after_epoch


def _kill_mid_epoch(epoch_to_kill, step_to_kill):
    def on_batch(epoch, step, batch):
        if (epoch, step) == (epoch_to_kill, step_to_kill):
            raise Killed
    return on_batch


@pytest.mark.parametrize("model", ["fersnet", "stargan"])
def test_resume_after_interruption_gives_identical_metrics(tiny, tmp_path, model):
    cfg = copy.deepcopy(tiny)
    cfg["train"]["epochs"] = 3
    whole = train_job(cfg, "ckplus", model, 0, out=tmp_path / "whole")
    run = tmp_path / "killed"
    with pytest.raises(Killed):                # killed between epochs 1 and 2 ...
        train_job(cfg, "ckplus", model, 0, out=run, hooks=Hooks(after_epoch=_kill_after(1)))
    with pytest.raises(Killed):                # ... and again in the middle of epoch 3
        train_job(cfg, "ckplus", model, 0, out=run, hooks=Hooks(on_batch=_kill_mid_epoch(3, 2)))
    assert not (run / paths.METRICS).exists()
    assert torch.load(run / paths.CHECKPOINT, weights_only=True)["epoch"] == 2
    resumed = train_job(cfg, "ckplus", model, 0, out=run)
    assert _stable(resumed) == _stable(whole)
    pd.testing.assert_frame_equal(_history(run), _history(tmp_path / "whole"))


def test_finished_job_started_again_does_nothing(tiny):
    first = train_job(tiny, "ckplus", "no_mtl", 0)
    run = paths.run_dir(tiny, "ckplus", "no_mtl", 0)
    stamp = (run / paths.CHECKPOINT).stat().st_mtime_ns
    assert train_job(tiny, "ckplus", "no_mtl", 0) == first
    assert (run / paths.CHECKPOINT).stat().st_mtime_ns == stamp


def test_nan_loss_stops_the_job_naming_epoch_and_step(tiny):
    def poison(epoch, step, batch):
        if (epoch, step) == (2, 1):
            batch["x"][:] = float("nan")
    with pytest.raises(TrainingError, match=r"epoch 2, step 1"):
        train_job(tiny, "ckplus", "fersnet", 0, hooks=Hooks(on_batch=poison))
    run = paths.run_dir(tiny, "ckplus", "fersnet", 0)
    assert not (run / paths.METRICS).exists()
    ckpt = torch.load(run / paths.CHECKPOINT, weights_only=True)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_checkpoint_from_other_settings_is_not_resumed_training_starts_over(tiny, tmp_path, capsys):
    with pytest.raises(Killed):
        train_job(tiny, "ckplus", "fersnet", 0, hooks=Hooks(after_epoch=_kill_after(1)))
    changed = copy.deepcopy(tiny)
    changed["train"]["lambda_l1"] = 2.0
    capsys.readouterr()
    resumed = train_job(changed, "ckplus", "fersnet", 0)
    err = capsys.readouterr().err
    assert "made from other inputs" in err and "training starts over" in err
    fresh = train_job(changed, "ckplus", "fersnet", 0, out=tmp_path / "fresh")
    assert _stable(resumed) == _stable(fresh)      # the old epoch 1 was not reused
    pd.testing.assert_frame_equal(_history(paths.run_dir(tiny, "ckplus", "fersnet", 0)), _history(tmp_path / "fresh"))


def test_validation_selection_never_uses_the_test_fold(tiny):
    cfg = copy.deepcopy(tiny)
    cfg["train"].update(selection="val", val_subjects=0.2, epochs=3)
    metrics = train_job(cfg, "ckplus", "fersnet", 0)
    hist = pd.read_csv(paths.run_dir(cfg, "ckplus", "fersnet", 0) / paths.HISTORY)
    assert metrics["selection"] == "val"
    best_val = hist["val_acc"].max()
    assert metrics["selected_epoch"] == int(hist.loc[hist["val_acc"] == best_val, "epoch"].min())
    assert metrics["best_epoch"] == int(hist.loc[hist["test_acc_diagnostic"].idxmax(), "epoch"])


def test_validation_subjects_come_from_training_subjects_only(tiny):
    from fersnet.data.dataset import load_processed
    from fersnet.training.train import val_split
    p = load_processed(tiny, "ckplus")
    train, test = p.split(3)
    kept, val = val_split(p.meta, train, 0.2, 0, 3)
    subj = p.meta["subject"].to_numpy()
    assert set(subj[val]) and not set(subj[val]) & set(subj[test]) and not set(subj[val]) & set(subj[kept])
    assert sorted(np.concatenate([kept, val])) == sorted(train)


def test_stargan_job_has_no_accuracy(tiny):
    metrics = train_job(tiny, "ckplus", "stargan", 0)
    assert metrics["accuracy"] is None and metrics["confusion"] is None
    hist = pd.read_csv(paths.run_dir(tiny, "ckplus", "stargan", 0) / paths.HISTORY)
    assert {"D/loss_gp", "D/loss_cls", "G/loss_rec"} <= set(hist.columns)


def test_fes_da_refuses_without_a_fersnet_run(tiny):
    with pytest.raises(TrainingError, match="fersnet"):
        train_job(tiny, "ckplus", "fes_da", 0)


def test_fes_da_balance_tops_every_class_up_to_the_largest(tiny):
    folder = Path(tiny["preprocess"]["out"]) / "ckplus"
    meta = pd.read_csv(folder / "meta.csv", dtype={"subject": str, "sequence": str})
    images = np.load(folder / "images.npy")
    keep = ~((meta["label"] == 2) & (meta["frame"] > 0)).to_numpy()     # class 2: 1 frame, others 3
    meta[keep].to_csv(folder / "meta.csv", index=False)
    np.save(folder / "images.npy", images[keep])
    tiny["fes_da"]["per_class"] = "balance"
    train_job(tiny, "ckplus", "fersnet", 0)
    metrics = train_job(tiny, "ckplus", "fes_da", 0)
    info = metrics["fes_da"]
    from fersnet.data.dataset import load_processed
    p = load_processed(tiny, "ckplus")
    train, _ = p.split(0)
    counts = np.bincount(p.meta["label"].to_numpy()[train], minlength=6)
    added = np.array([info["added"][c] for c in p.classes])
    assert (counts + added == counts.max()).all() and added[2] > 0 and added.sum() == metrics["n_train_synthetic"]
    assert list(metrics["train_class_counts"].values()) == [counts.max()] * 6
    assert metrics["accuracy"] is not None and metrics["model"] == "fes_da"


@pytest.fixture
def oulu_fold(test_cfg):
    """A balanced Oulu-CASIA-style database (every subject shows all 6 expressions, 3 frames each)
    and the fersnet run of its fold 0, which FES-DA and its control fine-tune."""
    write_processed(Path(test_cfg["preprocess"]["out"]) / "oulu", db="oulu", n_subjects=10, size=24)
    cfg = copy.deepcopy(test_cfg)
    cfg["train"].update(crop=16, batch_size=32, epochs=1)
    train_job(cfg, "oulu", "fersnet", 0)
    return cfg


def test_fes_da_on_a_balanced_fold_renders_every_face_into_every_other_expression(oulu_fold):
    metrics = train_job(oulu_fold, "oulu", "fes_da", 0)
    n_real = metrics["n_train_real"]
    assert n_real == 9 * 6 * 3                                  # 9 training subjects x 6 expressions x 3 frames
    assert metrics["n_train_synthetic"] == 5 * n_real > n_real  # every face into the 5 other expressions
    assert list(metrics["fes_da"]["added"].values()) == [5 * n_real // 6] * 6
    counts = list(metrics["train_class_counts"].values())
    assert counts == [counts[0]] * 6 and sum(counts) == metrics["n_train"]  # balanced
    real_samples = metrics["n_train"] - metrics["n_train_synthetic"]      # real faces, repeated to the share
    assert real_samples / metrics["n_train"] == pytest.approx(oulu_fold["fes_da"]["real_share"])
    assert metrics["fes_da"]["per_class"] == "all_targets"


def test_fes_da_real_trains_on_real_faces_only_with_the_same_epochs_and_steps(oulu_fold):
    aug = train_job(oulu_fold, "oulu", "fes_da", 0)
    ctrl = train_job(oulu_fold, "oulu", "fes_da_real", 0)
    assert ctrl["n_train_synthetic"] == 0 and ctrl["n_train_real"] == aug["n_train_real"]
    assert ctrl["n_train"] == aug["n_train"]                    # the real faces, each as often
    assert list(ctrl["train_class_counts"].values()) == [aug["n_train"] // 6] * 6
    assert ctrl["epochs"] == aug["epochs"] == oulu_fold["fes_da"]["epochs"] and ctrl["steps"] == aug["steps"]
    assert ctrl["fes_da"]["source_run"] == aug["fes_da"]["source_run"]
    assert ctrl["accuracy"] is not None and ctrl["model"] == "fes_da_real"


def test_fes_da_real_refuses_without_a_fersnet_run(tiny):
    with pytest.raises(TrainingError, match="fes_da_real fine-tunes it"):
        train_job(tiny, "ckplus", "fes_da_real", 0)


def test_all_targets_without_real_share_renders_every_face_into_every_other_expression():
    from fersnet.training import fes_da
    labels = np.array([0, 0, 0, 1, 2, 2])                  # imbalanced; class 3 has no face at all
    p = fes_da.plan(labels, np.arange(6), 4, "all_targets", None, np.random.default_rng(0))
    counts = np.bincount(labels[p.real], minlength=4) + np.bincount(p.tgt, minlength=4)
    assert (counts == 6).all() and list(p.real) == list(range(6))
    assert not (labels[p.src] == p.tgt).any()              # never rendered into its own expression
    pairs = set(zip(p.src.tolist(), p.tgt.tolist()))
    assert len(p.src) == len(pairs) == 6 * 3               # each face once into the 3 other expressions


CKPLUS_CLASSES = ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]
CKPLUS_SEQUENCES = [45, 18, 59, 25, 69, 28, 83]            # CK+'s 327 labelled sequences per class


@pytest.mark.parametrize("per_class", ["all_targets", "balance", 40])
@pytest.mark.parametrize("real_share", [None, 0.2, 0.5, 0.8, 0.95])
def test_fes_da_set_is_balanced_on_ckplus_proportions_at_every_real_share(per_class, real_share):
    from fersnet.training import fes_da
    labels = np.repeat(np.arange(7), CKPLUS_SEQUENCES)
    rows = np.random.default_rng(1).permutation(len(labels))[:290]     # one fold's training rows
    p = fes_da.plan(labels, rows, 7, per_class, real_share, np.random.default_rng(0))
    real = np.bincount(labels[p.real], minlength=7)
    final = real + np.bincount(p.tgt, minlength=7)
    assert final.max() - final.min() <= 1, final            # balanced: real repeats and renderings together
    assert real.max() / real.min() > 1.8                   # while the real faces alone are not
    assert not (labels[p.src] == p.tgt).any() and set(p.src) <= set(rows)
    copies = np.bincount(p.real, minlength=len(labels))[rows]
    assert set(copies) == {len(p.real) // len(rows)}        # each real face equally often
    if real_share is None:
        assert list(p.real) == list(rows)
    elif per_class == "all_targets":
        # the share asked for, up to what balance allows: the largest class holds at most T real
        # samples, so real faces make at most mean / max of the real class counts (CK+: 0.56);
        # a small budget (balance, an integer) cannot go below each real face once
        cap = real.mean() / real.max()
        assert len(p.real) / final.sum() == pytest.approx(min(real_share, cap), abs=0.05)
    for c in range(7):                                     # a class's sources: other classes' faces, each equally often
        per_source = np.bincount(p.src[p.tgt == c], minlength=len(labels))[rows[labels[rows] != c]]
        assert per_source.max() - per_source.min() <= 1


@pytest.fixture
def ckplus_fold(test_cfg):
    """A CK+-like imbalanced database (7 classes, one face per sequence, CK+'s 327 sequences per
    class: 45 ... 83) and the fersnet run of its fold 0, which FES-DA fine-tunes."""
    folder = write_processed(Path(test_cfg["preprocess"]["out"]) / "ckplus", classes=CKPLUS_CLASSES,
                             n_subjects=max(CKPLUS_SEQUENCES), size=24)
    meta = pd.read_csv(folder / "meta.csv", dtype={"subject": str, "sequence": str})
    images = np.load(folder / "images.npy")
    index = meta["subject"].map({s: i for i, s in enumerate(sorted(meta["subject"].unique()))})
    keep = ((meta["frame"] == 0) & (index < meta["label"].map(dict(enumerate(CKPLUS_SEQUENCES))))).to_numpy()
    meta[keep].to_csv(folder / "meta.csv", index=False)
    np.save(folder / "images.npy", images[keep])
    assert list(np.bincount(meta["label"][keep])) == CKPLUS_SEQUENCES
    cfg = copy.deepcopy(test_cfg)
    cfg["train"].update(crop=16, batch_size=32, epochs=1)
    return cfg, train_job(cfg, "ckplus", "fersnet", 0)


@pytest.mark.parametrize("real_share", [0.5, None])
def test_fes_da_training_set_is_balanced_on_an_imbalanced_ckplus_fold(ckplus_fold, real_share):
    cfg, fersnet = ckplus_fold
    real = np.array(list(fersnet["train_class_counts"].values()))
    assert real.max() / real.min() > 1.8                   # CK+'s imbalance in the fold's real faces
    cfg["fes_da"]["real_share"] = real_share
    metrics = train_job(cfg, "ckplus", "fes_da", 0)
    counts = np.array(list(metrics["train_class_counts"].values()))
    assert counts.max() - counts.min() <= 1 and counts.sum() == metrics["n_train"]
    added = np.array([metrics["fes_da"]["added"][c] for c in CKPLUS_CLASSES])
    copies = (metrics["n_train"] - metrics["n_train_synthetic"]) // metrics["n_train_real"]
    assert (copies * real + added == counts).all()         # the renderings fill what the real faces lack
    assert copies == (1 if real_share is None else 6)      # null: each real face once; 0.5: 6x beside 6 x N renderings
    if real_share is not None:
        assert (metrics["n_train"] - metrics["n_train_synthetic"]) / metrics["n_train"] == pytest.approx(0.5, abs=0.01)


def test_fes_da_set_keeps_the_all_targets_size_and_share_on_ckplus_proportions():
    from fersnet.training import fes_da
    labels = np.repeat(np.arange(7), CKPLUS_SEQUENCES)
    rows = np.arange(len(labels))
    p = fes_da.plan(labels, rows, 7, "all_targets", 0.5, np.random.default_rng(0))
    n = len(rows)
    assert len(p.real) == 6 * n                            # each real face 6 times ...
    assert len(p.src) == 7 * 561 - 6 * n                   # ... and renderings up to 561 per class:
    assert 561 == -(-(6 * n + 6 * n) // 7)                 # 6 N real + 6 N budget shared by 7, rounded up
    assert len(p.real) / (len(p.real) + len(p.src)) == pytest.approx(0.5, abs=0.001)


def test_repeat_real_repeats_every_row_as_often_as_the_size_allows():
    from fersnet.training.fes_da import repeat_real
    out = repeat_real(np.arange(5), 13, np.random.default_rng(0))
    counts = np.bincount(out, minlength=5)
    assert len(out) == 13 and set(counts) == {2, 3} and (counts == 3).sum() == 3


def test_real_share_repeats_the_real_faces_and_the_control_grows_with_them():
    from fersnet.training import fes_da
    rows, labels = np.arange(12), np.repeat(np.arange(6), 2)
    rng = np.random.default_rng(0)
    assert list(fes_da.plan(labels, rows, 6, "all_targets", None, rng).real) == list(rows)   # 1/6 real
    half = fes_da.plan(labels, rows, 6, "all_targets", 0.5, rng)
    assert len(half.real) == len(half.src) == 60 and set(np.bincount(half.real)) == {5}  # as many real as synthetic
    cfg = {"seed": 0, "fes_da": {"per_class": "all_targets", "real_share": 0.5}}
    control = fes_da.control_rows(labels, rows, 6, cfg, fold=0)
    assert len(control) == 60 + 60 and set(np.bincount(control)) == {10}


def test_fes_da_budget_of_each_per_class_rule():
    from fersnet.training.fes_da import synthetic_budget
    assert synthetic_budget(np.array([2, 1, 0]), 4) == 12                     # an integer: per class, on average
    assert synthetic_budget(np.array([3, 1, 2]), "balance") == 3              # the top-up to the largest
    assert synthetic_budget(np.array([3, 1, 2]), "all_targets") == 2 * 6      # every face into the 2 others
    from fersnet.training import fes_da
    labels = np.array([0, 0, 1])                           # 3 real faces + 3 x 4 renderings, 5 per class
    p = fes_da.plan(labels, np.arange(3), 3, 4, None, np.random.default_rng(0))
    assert len(p.src) == 12 and list(np.bincount(p.tgt, minlength=3)) == [3, 4, 5]
    p = fes_da.plan(labels, np.arange(3), 3, 1, None, np.random.default_rng(0))   # too few to balance: raised
    assert list(np.bincount(p.tgt, minlength=3)) == [0, 1, 2]


def test_stargan_learning_rate_decays_linearly_to_zero_over_the_second_half(tiny):
    from fersnet.training.loop import linear_decay_factor
    assert [linear_decay_factor(10, 5)(e) for e in range(1, 11)] == [1.0] * 6 + [0.8, 0.6, 0.4, 0.2]
    cfg = copy.deepcopy(tiny)
    cfg["train"]["epochs"] = 4
    train_job(cfg, "ckplus", "stargan", 0)
    lr = pd.read_csv(paths.run_dir(cfg, "ckplus", "stargan", 0) / paths.HISTORY)["lr"].to_numpy()
    assert lr / cfg["stargan"]["lr"] == pytest.approx([1.0, 1.0, 1.0, 0.5])


def test_load_generator_renders_faces_for_every_generator_model(tiny):
    from fersnet.models.registry import load_generator
    cfg = copy.deepcopy(tiny)
    cfg["train"]["epochs"] = 1
    for model in ("fersnet", "no_mtl", "no_convflu", "stargan", "fes_da", "fes_da_real"):
        train_job(cfg, "ckplus", model, 0)
        gen = load_generator(paths.run_dir(cfg, "ckplus", model, 0), "cpu")
        out = gen(torch.rand(3, 1, 16, 16), torch.tensor([0, 2, 5]))
        assert out.shape == (3, 1, 16, 16) and 0.0 <= float(out.min()) and float(out.max()) <= 1.0, model


def test_load_generator_reads_runs_from_before_model_output_and_names_other_missing_keys(tiny):
    import json

    from fersnet.errors import FersnetError
    from fersnet.models.registry import load_generator
    cfg = copy.deepcopy(tiny)
    cfg["train"]["epochs"] = 1
    cfg["model"]["output"] = "direct"
    run = paths.run_dir(cfg, "ckplus", "fersnet", 0)
    train_job(cfg, "ckplus", "fersnet", 0)
    saved = json.loads((run / paths.CONFIG).read_text())
    del saved["model"]["output"]                       # as written before the key existed
    (run / paths.CONFIG).write_text(json.dumps(saved))
    assert load_generator(run, "cpu")(torch.rand(2, 1, 16, 16), torch.tensor([0, 1])).shape == (2, 1, 16, 16)
    del saved["model"]["width"]
    (run / paths.CONFIG).write_text(json.dumps(saved))
    with pytest.raises(FersnetError, match="lacks the key 'width'"):
        load_generator(run, "cpu")


def test_cli_train_reports_missing_data_without_traceback(tiny, tmp_path, capsys):
    import yaml
    from fersnet.cli import main
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["preprocess"]["out"] = str(tmp_path / "nowhere")
    raw["paths"]["results"] = str(tmp_path / "results")
    raw["mlflow"]["enabled"] = False
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    code = main(["train", "--params", str(params), "--profile", "test", "--db", "ckplus",
                 "--model", "fersnet", "--fold", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "images.npy" in err and "Traceback" not in err


@pytest.mark.filterwarnings("ignore::FutureWarning")     # TorchScript is deprecated in torch >= 2.9
def test_identity_loss_uses_a_user_torchscript_embedding(tiny, tmp_path):
    embed = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten()))
    embed.save(str(tmp_path / "embed.pt"))
    cfg = copy.deepcopy(tiny)
    cfg["train"].update(epochs=1, lambda_id=0.05, identity_net=str(tmp_path / "embed.pt"))
    train_job(cfg, "ckplus", "fersnet", 0)
    hist = pd.read_csv(paths.run_dir(cfg, "ckplus", "fersnet", 0) / paths.HISTORY)
    assert np.isfinite(hist["G/loss_id"]).all() and (hist["G/loss_id"] > 0).all()


def test_identity_loss_without_a_network_is_a_clear_error(tiny):
    from fersnet.errors import FersnetError
    cfg = copy.deepcopy(tiny)
    cfg["train"]["lambda_id"] = 0.05
    with pytest.raises(FersnetError, match="identity_net"):
        train_job(cfg, "ckplus", "fersnet", 0)


@pytest.mark.parametrize("model", ["fersnet", "stargan"])
def test_fused_adam_trains_like_the_default_adam(tiny, tmp_path, model):
    # train.fused_adam: yes runs torch's fused Adam kernel (on CUDA by default, `auto`); on the CPU
    # it exists too, so the path is exercised here: same losses up to float rounding.
    runs = {}
    for flag in ("no", "yes"):
        cfg = copy.deepcopy(tiny)
        cfg["train"]["fused_adam"] = flag
        train_job(cfg, "ckplus", model, 0, out=tmp_path / flag)
        ck = torch.load(tmp_path / flag / paths.CHECKPOINT, weights_only=True)
        runs[flag] = (_history(tmp_path / flag), ck["optimizers"])
    losses = [c for c in runs["no"][0].columns if "/loss" in c]
    assert losses
    fused, default = runs["yes"][0][losses].to_numpy(), runs["no"][0][losses].to_numpy()
    # the first epoch agrees to float32 rounding; later ones drift further as the two float32 runs,
    # which differ only in the order of their float operations, part over the Adam steps
    np.testing.assert_allclose(fused[0], default[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fused, default, rtol=2e-2, atol=1e-4)
    assert all(g["fused"] for opt in runs["yes"][1].values() for g in opt["param_groups"])
    assert not any(g.get("fused") for opt in runs["no"][1].values() for g in opt["param_groups"])


def test_fast_ops_auto_is_off_on_the_cpu_and_yes_takes_another_float32_path(tiny, tmp_path):
    # train.fast_ops: auto means on with CUDA only, so on the CPU it trains exactly as `no`;
    # `yes` (group_norm InstanceNorm, one discriminator call) rounds differently in float32
    weights = {}
    for flag in ("auto", "no", "yes"):
        cfg = copy.deepcopy(tiny)
        cfg["train"]["fast_ops"] = flag
        train_job(cfg, "ckplus", "fersnet", 0, out=tmp_path / flag)
        weights[flag] = torch.load(tmp_path / flag / paths.CHECKPOINT, weights_only=True)["model"]
    keys = list(weights["no"])
    assert keys and all(torch.equal(weights["auto"][k], weights["no"][k]) for k in keys)
    assert any(not torch.equal(weights["yes"][k], weights["no"][k]) for k in keys)
    # the same function: the two paths end near each other
    assert all(torch.allclose(weights["yes"][k].float(), weights["no"][k].float(), rtol=0.2, atol=0.05)
               for k in keys if weights["no"][k].is_floating_point())


@pytest.mark.slow
def test_compiled_networks_train_like_eager_ones(tiny, tmp_path):
    # train.compile: yes runs the networks through torch.compile (dynamo + AOTAutograd); the
    # aot_eager backend skips code generation, so the CPU test stays quick. Checkpoints keep the
    # eager key names, so a compiled run's generator loads like any other. (StarGAN compiled, whose
    # discriminator must stay eager for the gradient penalty: tests/test_fast_path.py, benchmark.)
    model = "fersnet"
    from fersnet.models.registry import load_generator
    runs = {}
    for flag in ("no", "yes"):
        cfg = copy.deepcopy(tiny)
        cfg["train"].update(compile=flag, compile_backend="aot_eager", epochs=1)
        runs[flag] = train_job(cfg, "ckplus", model, 0, out=tmp_path / flag)
    hist = {f: _history(tmp_path / f) for f in runs}
    losses = [c for c in hist["no"].columns if "/loss" in c]
    assert losses
    np.testing.assert_allclose(hist["yes"][losses].to_numpy(), hist["no"][losses].to_numpy(), rtol=1e-3, atol=1e-4)
    a = torch.load(tmp_path / "yes" / paths.CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "no" / paths.CHECKPOINT, weights_only=True)["model"]
    assert list(a) == list(b) and not any("_orig_mod" in k for k in a)
    gen = load_generator(tmp_path / "yes", "cpu")
    x = torch.rand(2, 1, tiny["train"]["crop"], tiny["train"]["crop"])
    assert gen(x, torch.tensor([0, 1])).shape == x.shape


def test_identical_training_writes_an_identical_checkpoint_and_fingerprint(tiny):
    # wall-clock times stay out of checkpoint.pt (history.csv and metrics.json keep them), so the
    # fingerprints that hash the checkpoint (scoring, FES-DA) are the same after a retraining
    from fersnet import provenance
    from fersnet.metrics.score import score_fingerprint
    from fersnet.training.train import fingerprint
    run = paths.run_dir(tiny, "ckplus", "fersnet", 0)
    train_job(tiny, "ckplus", "fersnet", 0)
    first = provenance.file_sha256(run / paths.CHECKPOINT)
    prints = score_fingerprint(tiny, "ckplus", "fersnet", 0).digest, fingerprint(tiny, "ckplus", "fes_da", 0).digest
    again = train_job(tiny, "ckplus", "fersnet", 0, force=True)            # trained again, swapped in
    assert provenance.file_sha256(run / paths.CHECKPOINT) == first
    assert (score_fingerprint(tiny, "ckplus", "fersnet", 0).digest, fingerprint(tiny, "ckplus", "fes_da", 0).digest) == prints
    ckpt = torch.load(run / paths.CHECKPOINT, weights_only=True)
    assert ckpt["history"] and all("seconds" not in row for row in ckpt["history"])
    assert again["seconds"] > 0 and (pd.read_csv(run / paths.HISTORY)["seconds"] > 0).all()


def test_a_resumed_run_keeps_the_time_of_the_epochs_before_the_kill(tiny, tmp_path):
    run = tmp_path / "killed"
    with pytest.raises(Killed):
        train_job(tiny, "ckplus", "no_mtl", 0, out=run, hooks=Hooks(after_epoch=_kill_after(1)))
    first_epoch = float(pd.read_csv(run / paths.HISTORY)["seconds"].iloc[0])
    resumed = train_job(tiny, "ckplus", "no_mtl", 0, out=run)
    seconds = pd.read_csv(run / paths.HISTORY)["seconds"]
    assert len(seconds) == 2 and float(seconds.iloc[0]) == pytest.approx(first_epoch) and (seconds > 0).all()
    assert resumed["seconds"] == pytest.approx(float(seconds.sum()), abs=1e-3)
