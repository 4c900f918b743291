"""params.yaml is validated at load: unknown keys, wrong types, impossible values name the key."""
from __future__ import annotations

import copy

import pytest
import yaml

from fersnet import config
from fersnet.config import ConfigError

from conftest import ROOT


@pytest.fixture
def raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_shipped_params_resolve_for_every_profile():
    for profile in config.PROFILES:
        cfg = config.load(ROOT / "params.yaml", profile=profile)
        assert cfg["profile"] == profile
        assert cfg["train"]["crop"] <= cfg["preprocess"]["size"]


def test_profile_overrides_merge_over_base(raw):
    cfg = config.resolve(raw, "test")
    assert cfg["model"]["width"] == raw["profiles"]["test"]["model"]["width"]
    assert cfg["train"]["lr"] == raw["train"]["lr"]  # untouched keys keep the base value


def test_floats_written_with_dot_are_floats(raw):
    assert isinstance(config.resolve(raw)["train"]["lr"], float)


@pytest.mark.parametrize("key, value, words", [
    (("train", "lr"), "1e-4", "train.lr"),                 # YAML 1.1 reads 1e-4 as a string
    (("train", "epochs"), 0, "train.epochs"),
    (("train", "betas"), [0.5], "train.betas"),
    (("model", "convflu_kernel"), 5, "one of 1, 3"),
    (("databases",), ["ckplus", "affectnet"], "databases[1]"),
    (("preprocess", "no_face"), "guess", "skip, center"),
    (("train", "batch_size"), True, "train.batch_size"),
])
def test_bad_value_names_key_and_allowed(raw, key, value, words):
    node = raw
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    with pytest.raises(ConfigError, match=None) as e:
        config.resolve(raw)
    assert words in str(e.value)


def test_unknown_key_is_an_error(raw):
    raw["train"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match="unknown key `train.learning_rate`"):
        config.resolve(raw)


def test_unknown_key_inside_a_profile_is_an_error(raw):
    raw["profiles"]["paper"]["train"]["epoch"] = 3
    with pytest.raises(ConfigError, match="profiles.paper.train.epoch"):
        config.resolve(raw)


def test_missing_key_is_an_error(raw):
    del raw["train"]["lr"]
    with pytest.raises(ConfigError, match="missing key.*train.lr"):
        config.resolve(raw)


def test_crop_larger_than_stored_face_is_impossible(raw):
    raw["train"]["crop"] = raw["preprocess"]["size"] + 1
    with pytest.raises(ConfigError, match="train.crop"):
        config.resolve(raw)


def test_unknown_profile_is_an_error(raw):
    with pytest.raises(ConfigError, match="allowed: demo, paper, test"):
        config.resolve(copy.deepcopy(raw), "fast")


def test_cli_reports_config_error_and_exits_nonzero(tmp_path, capsys):
    from fersnet.cli import main
    bad = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text().replace("run_seeds: [0]", "run_seeds: [-1]")
    bad.write_text(text)
    assert main(["synth", "--params", str(bad)]) == 2
    assert "`run_seeds[0]`" in capsys.readouterr().err


@pytest.mark.parametrize("edit, message", [
    (lambda raw: raw.update(seed=3), "`seed` is now `run_seeds`, a list of run seeds (run_seeds: [3]); "
                                     "the stand-in's seed is `synth.data_seed`"),
    (lambda raw: raw.update(seeds=[0, 1]), "`seeds` is now `run_seeds` (run_seeds: [0, 1]); "
                                           "each run trains, judges and scores at one of them"),
    (lambda raw: raw["synth"].update(seed=7), "`synth.seed` is now `synth.data_seed` (data_seed: 7), "
                                              "the stand-in's own seed"),
    (lambda raw: raw["profiles"]["paper"].update(seeds=[2]), "`profiles.paper.seeds` is now "
                                                             "`profiles.paper.run_seeds` (run_seeds: [2]); "
                                                             "each run trains, judges and scores at one of them"),
])
def test_the_seed_keys_of_earlier_versions_are_refused_with_their_new_spelling(raw, edit, message):
    edit(raw)
    with pytest.raises(ConfigError) as err:
        config.resolve(raw, source="my.yaml")
    assert str(err.value) == f"my.yaml: {message}"


def test_the_cli_refuses_an_old_seed_key_in_one_line_naming_the_file(tmp_path, capsys):
    from fersnet.cli import main
    old = tmp_path / "params.yaml"
    old.write_text((ROOT / "params.yaml").read_text().replace("run_seeds: [0]", "seeds: [0]")
                   .replace("data_seed: 0 ", "seed: 0 "))
    assert main(["synth", "--params", str(old)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(old) in err[0] and "`seeds` is now `run_seeds` (run_seeds: [0])" in err[0]


def test_cli_fold_lists_parse_ranges_and_lists():
    from fersnet.cli import _fold_list
    assert _fold_list("3") == [3]
    assert _fold_list("0,2,5") == [0, 2, 5]
    assert _fold_list("0-3,7") == [0, 1, 2, 3, 7]


def test_cli_rejects_fold_out_of_range(capsys):
    from fersnet.cli import main
    assert main(["train", "--params", str(ROOT / "params.yaml"), "--db", "ckplus",
                 "--model", "fersnet", "--fold", "12"]) == 2
    assert "n_folds" in capsys.readouterr().err


def test_cli_refuses_one_out_folder_for_several_folds(capsys, tmp_path):
    from fersnet.cli import main
    assert main(["train", "--params", str(ROOT / "params.yaml"), "--db", "ckplus", "--model", "fersnet",
                 "--fold", "0-1", "--out", str(tmp_path / "run")]) == 2
    assert "single --fold" in capsys.readouterr().err


def test_yes_no_choices_accept_what_yaml_reads_as_booleans():
    # YAML 1.1 (PyYAML, Snakemake) reads an unquoted yes/no as true/false
    cfg = config.load(ROOT / "params.yaml", "test", config.parse_sets(["train.fused_adam=yes", "train.compile=no"]))
    assert cfg["train"]["fused_adam"] == "yes" and cfg["train"]["compile"] == "no"
    with pytest.raises(ConfigError, match="model.output"):      # a choice without yes/no stays strict
        config.load(ROOT / "params.yaml", "test", config.parse_sets(["model.output=yes"]))


def test_set_overrides_win_over_the_profile_and_are_validated():
    sets = config.parse_sets(["train.epochs=300", "model.condition=cin", "train.lr_milestones=[0.5]"])
    assert sets == {"train": {"epochs": 300, "lr_milestones": [0.5]}, "model": {"condition": "cin"}}
    cfg = config.load(ROOT / "params.yaml", "test", sets)       # the test profile sets train.epochs itself
    assert cfg["train"]["epochs"] == 300 and cfg["model"]["condition"] == "cin"
    assert cfg["train"]["crop"] == config.load(ROOT / "params.yaml", "test")["train"]["crop"]
    with pytest.raises(ConfigError, match="model.condition"):
        config.load(ROOT / "params.yaml", "test", config.parse_sets(["model.condition=sideways"]))
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        config.parse_sets(["train.epochs"])


def test_cli_set_reaches_the_verb_and_bad_keys_exit_2(tmp_path, capsys):
    from fersnet.cli import main
    out = tmp_path / "params.md"
    assert main(["count-params", "--set", "preprocess.grayscale=false", "--write", str(out)]) == 0
    small = out.read_text()
    assert main(["count-params", "--set", "preprocess.grayscale=true", "--write", str(out)]) == 0
    assert out.read_text() != small
    assert main(["count-params", "--set", "train.epoch=3"]) == 2
    assert "train.epoch" in capsys.readouterr().err


def test_duplicate_key_in_params_is_an_error_naming_the_key_and_both_lines(tmp_path, capsys):
    from fersnet.cli import main
    lines = (ROOT / "params.yaml").read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.strip().startswith("check_counts:"))
    lines.insert(first + 1, "  check_counts: error\n")           # YAML alone would keep this one silently
    bad = tmp_path / "params.yaml"
    bad.write_text("".join(lines))
    assert main(["synth", "--params", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"line {first + 2}: duplicate key `data.check_counts` (first at line {first + 1})" in err


def test_duplicate_keys_are_found_in_profiles_and_set_values_but_merge_keys_may_override():
    with pytest.raises(ConfigError, match="line 4: duplicate key `profiles.test.train.epochs` \\(first at line 3\\)"):
        config.read_yaml("profiles:\n  test:\n    train: {epochs: 1,\n            epochs: 2}\n", "params.yaml")
    with pytest.raises(ConfigError, match="duplicate key `a`"):
        config.parse_sets(["train.lr_milestones={a: 1, a: 2}"])
    merged = config.read_yaml("base: &b {lr: 0.1}\ntrain:\n  <<: *b\n  lr: 0.2\n", "params.yaml")
    assert merged["train"] == {"lr": 0.2}


@pytest.mark.parametrize("uri", [None, "sqlite:///mlflow.db", "sqlite:////srv/fer/mlflow.db",
                                 "http://127.0.0.1:5000", "https://mlflow.example.org/team", "file:///srv/fer/mlruns"])
def test_mlflow_uri_accepts_sqlite_http_and_file_stores(raw, uri):
    raw["mlflow"]["uri"] = uri
    assert config.resolve(raw)["mlflow"]["uri"] == uri


@pytest.mark.parametrize("uri", ["bogus://x", "sqlite://", "sqlite:///", "http://", "mlflow.db", "/srv/fer/mlflow.db",
                                 "file://otherhost/mlruns", 5000])
def test_mlflow_uri_rejects_what_is_no_store(raw, uri):
    raw["mlflow"]["uri"] = uri
    with pytest.raises(ConfigError, match="`mlflow.uri` is .*allowed: null .*sqlite:///.*http\\(s\\)://.*file:"):
        config.resolve(raw)


def test_cli_rejects_a_bogus_mlflow_uri_naming_the_key(capsys):
    from fersnet.cli import main
    assert main(["synth", "--params", str(ROOT / "params.yaml"), "--set", "mlflow.uri=bogus://x"]) == 2
    assert "`mlflow.uri` is 'bogus://x'" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["all_targets", "balance", 40])
def test_fes_da_per_class_takes_all_targets_balance_or_a_count(raw, value):
    raw["fes_da"]["per_class"] = value
    assert config.resolve(raw)["fes_da"]["per_class"] == value


@pytest.mark.parametrize("value", ["everything", 0, "40", True])
def test_fes_da_per_class_refuses_anything_else_naming_the_choices(raw, value):
    raw["fes_da"]["per_class"] = value
    with pytest.raises(ConfigError, match=r"`fes_da.per_class`.*all_targets, balance or an integer >= 1"):
        config.resolve(raw)


def test_fes_da_control_without_fersnet_is_refused(raw):
    raw["models"] = ["fes_da_real", "stargan"]
    with pytest.raises(ConfigError, match="fes_da_real without fersnet"):
        config.resolve(raw)


def test_stargan_lr_decay_is_none_or_linear(raw):
    raw["stargan"]["lr_decay"] = "cosine"
    with pytest.raises(ConfigError, match=r"`stargan.lr_decay`.*none, linear"):
        config.resolve(raw)


def test_an_identity_loss_without_an_identity_network_is_refused_at_load(raw):
    raw["train"]["lambda_id"] = 0.05
    with pytest.raises(ConfigError, match=r"`train.lambda_id` is 0.05 but `train.identity_net` is null"):
        config.resolve(raw)
    raw["train"]["identity_net"] = "models/lightcnn9.pt"      # checked for existence when training starts
    assert config.resolve(raw)["train"]["lambda_id"] == 0.05


def test_the_paper_profile_does_not_claim_r2021_losses_without_the_identity_term():
    # R2021 adds 0.05 x an identity loss on LightCNN features; the paper profile has none unless a
    # user supplies the network, and its comment in params.yaml says so.
    paper = config.load(ROOT / "params.yaml", profile="paper")
    assert paper["train"]["lambda_id"] == 0.0 and paper["train"]["identity_net"] is None
    text = (ROOT / "params.yaml").read_text().split("\n  paper:", 1)[0]
    assert "not R2021-exact" in text and "train.identity_net" in text
