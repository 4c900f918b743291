"""The FER models' learning-rate schedule scales with the run's epochs (docs/training.md)."""
from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, write_processed
from fersnet import config, paths
from fersnet.config import ConfigError
from fersnet.training.loop import Hooks, lr_schedule_factor, milestone_epochs, multistep_factor


def test_paper_run_of_500_epochs_keeps_the_milestones_150_and_400():
    assert milestone_epochs([0.3, 0.8], 500) == [150, 400]
    scaled = lr_schedule_factor("multistep", 500, [0.3, 0.8], 0.1)
    fixed = multistep_factor([150, 400], 0.1)                  # R2021's MultiStepLR in epochs
    assert [scaled(e) for e in range(1, 501)] == [fixed(e) for e in range(1, 501)]
    assert (scaled(150), scaled(151), scaled(400), scaled(401)) == (1.0, 0.1, 0.1, 0.1 ** 2)


def test_a_20_epoch_run_decays_after_epochs_6_and_16():
    assert milestone_epochs([0.3, 0.8], 20) == [6, 16]
    factor = lr_schedule_factor("multistep", 20, [0.3, 0.8], 0.1)
    assert [factor(e) for e in range(1, 21)] == [1.0] * 6 + [0.1] * 10 + [0.1 ** 2] * 4


def test_milestones_round_to_the_nearest_epoch_and_never_before_the_first():
    assert milestone_epochs([0.3, 0.8], 15) == [5, 12]           # 4.5 rounds up, 12.0 stays
    assert milestone_epochs([0.3, 0.8], 27) == [8, 22]           # 8.1, 21.6
    assert milestone_epochs([0.3], 1) == [1]                     # a one-epoch run keeps the base rate
    assert lr_schedule_factor("multistep", 1, [0.3], 0.1)(1) == 1.0


def test_linear_and_constant_schedules():
    linear = lr_schedule_factor("linear", 5, [0.3, 0.8], 0.1)
    assert [linear(e) for e in range(1, 6)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    constant = lr_schedule_factor("constant", 5, [0.3, 0.8], 0.1)
    assert [constant(e) for e in range(1, 6)] == [1.0] * 5


def test_linear_decay_over_the_last_fraction_of_the_run():
    half = lr_schedule_factor("linear", 10, [0.3, 0.8], 0.1, decay_fraction=0.5)
    assert [half(e) for e in range(1, 11)] == pytest.approx([1.0] * 5 + [1.0, 0.8, 0.6, 0.4, 0.2])
    odd = lr_schedule_factor("linear", 15, [0.3, 0.8], 0.1, decay_fraction=0.5)     # ceil(7.5) = 8 epochs
    assert [odd(e) for e in range(1, 16)] == pytest.approx([1.0] * 8 + [k / 8 for k in range(7, 0, -1)])
    whole = lr_schedule_factor("linear", 5, [0.3, 0.8], 0.1, decay_fraction=1.0)
    assert [whole(e) for e in range(1, 6)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    tiny = lr_schedule_factor("linear", 3, [0.3, 0.8], 0.1, decay_fraction=0.01)     # at least one epoch
    assert [tiny(e) for e in range(1, 4)] == [1.0, 1.0, 1.0]
    for bad in ("0", "1.5"):
        with pytest.raises(ConfigError, match=r"train\.lr_decay_fraction"):
            config.load(ROOT / "params.yaml", "test", config.parse_sets([f"train.lr_decay_fraction={bad}"]))


def test_milestones_given_in_epochs_are_refused_naming_the_key_and_the_fraction():
    sets = config.parse_sets(["train.lr_milestones=[150, 400]"])
    with pytest.raises(ConfigError, match=r"`train\.lr_milestones`.*fractions.*150 of 500 epochs -> write 0\.3"):
        config.load(ROOT / "params.yaml", "test", sets)
    with pytest.raises(ConfigError, match=r"`train\.lr_milestones`"):
        config.load(ROOT / "params.yaml", "test", config.parse_sets(["train.lr_milestones=[0.3, 1]"]))
    with pytest.raises(ConfigError, match=r"train\.lr_schedule"):
        config.load(ROOT / "params.yaml", "test", config.parse_sets(["train.lr_schedule=cyclic"]))
    cfg = config.load(ROOT / "params.yaml", "test", config.parse_sets(["train.lr_milestones=[0.5]"]))
    assert cfg["train"]["lr_milestones"] == [0.5]
    assert config.load(ROOT / "params.yaml", "paper")["train"]["lr_milestones"] == [0.3, 0.8]


class Killed(Exception):
    pass


def test_training_follows_the_schedule_scaled_to_the_epochs_raised_by_min_steps(test_cfg, tmp_path):
    from fersnet.training.train import train_epochs, train_job
    write_processed(Path(test_cfg["preprocess"]["out"]) / "ckplus", n_subjects=10, size=24)
    cfg = copy.deepcopy(test_cfg)
    # 1 epoch asked, min_steps raises it to 5 (5 batches of 32 per epoch); milestones 0.3, 0.8 -> 2, 4
    cfg["train"].update(crop=16, batch_size=32, epochs=1, min_steps=25, lr_schedule="multistep",
                        lr_milestones=[0.3, 0.8], lr_gamma=0.1)
    whole = train_job(cfg, "ckplus", "fersnet", 0, out=tmp_path / "whole")
    assert whole["epochs"] == train_epochs(cfg["train"], whole["n_train_real"]) == 5
    history = pd.read_csv(tmp_path / "whole" / paths.HISTORY)
    assert list(history["lr"] / cfg["train"]["lr"]) == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])

    # stopped after epoch 3 and resumed: the same rates and the same result
    run = tmp_path / "resumed"

    def stop(epoch):
        if epoch == 3:
            raise Killed
    with pytest.raises(Killed):
        train_job(cfg, "ckplus", "fersnet", 0, out=run, hooks=Hooks(after_epoch=stop))
    resumed = train_job(cfg, "ckplus", "fersnet", 0, out=run)
    assert resumed["accuracy"] == whole["accuracy"]
    pd.testing.assert_frame_equal(pd.read_csv(run / paths.HISTORY).drop(columns=["seconds"]),
                                  history.drop(columns=["seconds"]))
