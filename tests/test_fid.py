"""FID/KID arithmetic and pytorch-fid's Inception weights in the three offline situations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from fersnet.metrics import fid as fidlib


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A weights file of pytorch-fid's real FID Inception architecture (random weights)."""
    path = tmp_path_factory.mktemp("inception") / "random_fid_inception.pth"
    torch.manual_seed(0)
    torch.save(fidlib.fid_inception_architecture().state_dict(), path)
    return path


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """torch.hub looks in an empty folder for the duration of the test (no cached weights)."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    return hub


def _fid_cfg(**over):
    return {"fid": {"inception_weights": None, "require_inception": False, "dims": 64,
                    "kid_subset": 20, "kid_subsets": 10, "batch_size": 8, "download": False, **over}}


def _faces(n, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 16, 16, channels), dtype=np.uint8)


def test_frechet_distance_equals_pytorch_fid_on_the_same_statistics():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, (300, 12))
    b = rng.normal(0.3, 1.5, (250, 12)) @ rng.normal(0, 0.5, (12, 12))
    mu1, s1 = fidlib.statistics(a)
    mu2, s2 = fidlib.statistics(b)
    ours = fidlib.frechet_distance(mu1, s1, mu2, s2)
    theirs = calculate_frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(theirs, rel=1e-7, abs=1e-9)
    assert ours > 0.5


def test_fid_is_zero_for_identical_sets_even_with_fewer_samples_than_dims():
    feats = np.random.default_rng(2).normal(size=(20, 64))   # rank-deficient covariance
    assert abs(fidlib.fid_from_features(feats, feats.copy())) < 1e-6


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(3)
    same = [fidlib.kid(rng.normal(size=(60, 16)), rng.normal(size=(60, 16)), 30, 20, seed=i)["mean"]
            for i in range(20)]
    shifted = fidlib.kid(rng.normal(size=(60, 16)), rng.normal(0.7, 1, (60, 16)), 30, 20)["mean"]
    # the biased V-statistic (diagonal included) stays clearly above zero for the same distribution
    x, y = rng.normal(size=(30, 16)), rng.normal(size=(30, 16))
    biased = (fidlib.polynomial_kernel(x, x).mean() + fidlib.polynomial_kernel(y, y).mean()
              - 2 * fidlib.polynomial_kernel(x, y).mean())
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same)) + 1e-3
    assert biased > 10 * abs(np.mean(same))
    assert shifted > 10 * abs(np.mean(same))


def test_kid_subset_size_is_capped_by_the_smaller_set():
    rng = np.random.default_rng(4)
    out = fidlib.kid(rng.normal(size=(7, 4)), rng.normal(size=(50, 4)), subset_size=100, n_subsets=3)
    assert out["subset_size"] == 7 and out["n_subsets"] == 3


def test_local_weights_file_loads_pytorch_fid_inception_and_leaves_hub_dir_alone(weights_file, empty_hub):
    model, info = fidlib.load_inception(_fid_cfg(inception_weights=str(weights_file)))
    assert info["source"] == "local" and info["official"] is False
    assert torch.hub.get_dir() == str(empty_hub)
    assert not (empty_hub / "checkpoints").exists()   # nothing was placed in the user's cache
    feats = fidlib.inception_features(model, _faces(3), batch_size=2)
    assert feats.shape == (3, 64) and np.isfinite(feats).all()


def test_weights_in_the_torch_hub_cache_are_used_without_download(weights_file, empty_hub):
    (empty_hub / "checkpoints").mkdir(parents=True)
    (empty_hub / "checkpoints" / fidlib.WEIGHTS_FILE).symlink_to(weights_file)
    model, info = fidlib.load_inception(_fid_cfg())
    assert info["source"] == "cache"
    assert info["sha256"] == fidlib.file_sha256(weights_file)
    assert model.training is False


def test_grayscale_faces_get_the_features_of_their_three_channel_copy(weights_file, empty_hub):
    model, _ = fidlib.load_inception(_fid_cfg(inception_weights=str(weights_file)))
    gray = _faces(2)
    rgb = np.repeat(gray, 3, axis=-1)
    np.testing.assert_allclose(fidlib.inception_features(model, gray), fidlib.inception_features(model, rgb),
                               rtol=1e-5, atol=1e-7)


def test_missing_weights_raise_unavailable_with_instructions_and_no_download(empty_hub):
    with pytest.raises(fidlib.InceptionUnavailable, match="fid.inception_weights"):
        fidlib.load_inception(_fid_cfg())
    assert not (empty_hub / "checkpoints").exists()


def test_local_weights_path_that_does_not_exist_is_named(tmp_path, empty_hub):
    with pytest.raises(fidlib.InceptionUnavailable, match="nowhere.pth"):
        fidlib.load_inception(_fid_cfg(inception_weights=str(tmp_path / "nowhere.pth")))


def test_weights_file_with_code_instead_of_tensors_is_refused(tmp_path, empty_hub):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": print}, bad)      # a pickled global: weights_only must refuse it
    with pytest.raises(fidlib.InceptionUnavailable, match="bad.pth"):
        fidlib.load_inception(_fid_cfg(inception_weights=str(bad)))


def test_class_conditional_fd_is_the_mean_over_targets_of_each_targets_distance_to_its_real_class():
    rng = np.random.default_rng(3)
    f_syn, f_ref = rng.normal(size=(12, 4)), rng.normal(size=(9, 4))
    targets, labels = np.array([0, 1, 2] * 4), np.array([0, 1, 2] * 3)
    out = fidlib.class_conditional(f_syn, targets, f_ref, labels, ["a", "b", "c"], kid_subset=3, kid_subsets=4)
    per = [fidlib.fid_from_features(f_syn[targets == k], f_ref[labels == k]) for k in range(3)]
    assert out["fd_per_target"] == pytest.approx(dict(zip("abc", per)))
    assert out["fd"] == pytest.approx(np.mean(per))
    assert out["n_per_target"]["a"] == {"synthetic": 4, "reference": 3} and out["kid_subset_size"] == 3
    assert out["kid"] == pytest.approx(np.mean(list(out["kid_per_target"].values())))


def test_a_class_with_fewer_than_two_faces_on_a_side_is_left_out_of_the_mean():
    rng = np.random.default_rng(4)
    f_syn, f_ref = rng.normal(size=(6, 3)), rng.normal(size=(5, 3))
    out = fidlib.class_conditional(f_syn, np.array([0, 0, 0, 1, 1, 1]), f_ref, np.array([0, 0, 0, 0, 1]), ["a", "b"])
    assert out["classes_used"] == ["a"] and out["fd_per_target"]["b"] is None
    assert out["fd"] == pytest.approx(out["fd_per_target"]["a"])
    assert fidlib.class_conditional(f_syn, np.zeros(6), f_ref, np.ones(5), ["a", "b"])["fd"] is None


def test_copying_the_input_wins_a_pooled_fd_but_loses_the_class_conditional_one():
    """Three well separated expression clusters. Copying returns each source face unchanged, so its
    pooled set has the real faces' class mix; only the distance per target expression sees that
    every copied face shows another expression than asked for."""
    rng = np.random.default_rng(5)
    centres = 10 * np.eye(3, 8)
    labels = np.repeat(np.arange(3), 20)
    real = centres[labels] + rng.normal(size=(60, 8))
    sources = np.repeat(np.arange(60), 2)
    targets = np.array([t for y in labels for t in range(3) if t != y])
    copied = real[sources]
    synthesized = centres[targets] + rng.normal(size=(120, 8))      # a face of the asked expression
    pooled = {name: fidlib.fid_from_features(f, real) for name, f in (("copy", copied), ("synth", synthesized))}
    per_class = {name: fidlib.class_conditional(f, targets, real, labels, ["a", "b", "c"])["fd"]
                 for name, f in (("copy", copied), ("synth", synthesized))}
    assert pooled["copy"] < pooled["synth"]
    assert per_class["synth"] < 5 < 100 < per_class["copy"]
