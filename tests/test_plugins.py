"""External models: found through the `fersnet.models` entry points of a distribution on the path
(or named as `package.module:attr` in params `models`), fingerprinted with their release and
source, tried before any job starts, and run by the real Snakemake like a built-in model."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fersnet import catalog, config, paths, provenance
from fersnet.models import registry
from plugin_dist import write_distribution
from test_training import tiny  # noqa: F401 - the fixture
from test_workflow import BIN, job_counts, make_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def on_path(tmp_path, monkeypatch):
    """Put a fresh distribution folder on sys.path; the catalogue forgets what it discovered."""
    monkeypatch.setattr(catalog, "MODELS", dict(catalog.MODELS))
    monkeypatch.setattr(catalog, "_discovered", False)

    def add(pkg: str, **kw) -> Path:
        folder = write_distribution(tmp_path / f"site_{pkg}", pkg, **kw)
        monkeypatch.syspath_prepend(str(folder))
        importlib.invalidate_caches()
        for name in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setattr(catalog, "_discovered", False)
        return folder
    return add


def load(**overrides) -> dict:
    return config.load(ROOT / "params.yaml", "test", overrides)


def test_an_entry_point_model_is_discovered_with_its_release_and_source_in_the_fingerprint(on_path):
    folder = on_path("fer_ep")
    cfg = load(models=["fersnet", "tinycnn"])
    spec = catalog.model("tinycnn")
    assert (spec.origin.dist, spec.origin.version, spec.origin.plugin) == ("fer_ep", "0.1", "fer_ep.spec:FER")
    assert catalog.fer_models(cfg["models"]) == ["fersnet", "tinycnn"] and "tinycnn" not in catalog.generators()
    before = provenance.job_params(cfg, "train", "tinycnn")["plugin"]
    assert before == {"dist": "fer_ep", "version": "0.1", "source": spec.origin.source}
    assert "plugin" not in provenance.job_params(cfg, "train", "fersnet")
    registry.check_plugins(cfg)
    with open(folder / "fer_ep" / "model.py", "a") as f:
        f.write("# a changed line\n")
    assert catalog.source_hash("fer_ep.model") != before["source"]


def test_two_plugins_claiming_one_key_or_a_built_in_key_are_refused_naming_both(on_path):
    on_path("clash_a", entry_points={"a": "clash_a.spec:FER"})
    on_path("clash_b", entry_points={"b": "clash_b.spec:FER"})
    with pytest.raises(config.ConfigError, match=r"model plugin 'b' .*: its key 'tinycnn' is taken by model "
                                                 r"plugin 'clash_a.spec:FER'"):
        load()


def test_a_models_entry_naming_module_attr_registers_the_model_and_is_written_back(on_path):
    on_path("gen_ref", entry_points={})
    cfg = load(models=["fersnet", "gen_ref.spec:GEN"])
    assert cfg["models"] == ["fersnet", "tinygen"] and catalog.generators(cfg["models"]) == ["fersnet", "tinygen"]
    assert config.params_view(cfg)["models"] == ["fersnet", "gen_ref.spec:GEN"]
    assert catalog.model("tinygen").origin.dist == "gen_ref"
    registry.check_plugins(cfg)


@pytest.mark.parametrize("kind, message", [
    ("import", r"model plugin 'broken' \(entry point nowhere.spec:FER of imp_b 0.1\): cannot load "
               r"'nowhere.spec:FER' \(ModuleNotFoundError: No module named 'nowhere'\)"),
    ("not a spec", r"model plugin 'broken' \(entry point spec_b.model:TinyCNNTask of spec_b 0.1\): names a type, not a fersnet.catalog.ModelSpec"),
])
def test_a_plugin_that_cannot_be_loaded_stops_params_loading_with_one_line_naming_it(on_path, kind, message):
    ref = {"import": "nowhere.spec:FER", "not a spec": "{pkg}.model:TinyCNNTask"}[kind]
    pkg = {"import": "imp_b", "not a spec": "spec_b"}[kind]
    on_path(pkg, entry_points={"broken": ref.format(pkg=pkg)})
    with pytest.raises(config.ConfigError, match=message) as e:
        load()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw, message", [
    ({"out": "n_classes + 1"}, r"model plugin 'shape_b.spec:FER' \(model tinycnn\): classify returned \(4, 7\) "
                               r"for 4 faces of 1x16x16; expected a tensor of shape \(4, 6\)"),
    ({"crop": "\n    del synthesize"}, None),
])
def test_a_plugin_with_a_wrong_output_shape_or_a_missing_method_fails_the_check_naming_it(on_path, kw, message):
    pkg = "shape_b" if "out" in kw else "miss_b"
    on_path(pkg, entry_points={"tinycnn": f"{pkg}.spec:FER", "tinygen": f"{pkg}.spec:GEN"}, **kw)
    cfg = load(models=["tinycnn", "tinygen"], databases=["oulu"])
    cfg["train"]["crop"], cfg["preprocess"]["grayscale"] = 16, True
    with pytest.raises(catalog.CatalogError) as e:
        registry.check_plugins(cfg)
    if message:
        assert e.match(message)
    else:
        assert e.match(r"model plugin 'miss_b.spec:GEN' \(model tinygen\): its task \(TinyGenTask\) lacks synthesize")


def test_an_entry_point_model_runs_through_snakemake_and_an_edit_of_its_source_makes_it_stale(tmp_path):
    site = write_distribution(tmp_path / "site", "fer_run")
    proj = make_project(tmp_path, models=["tinycnn"])
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    targets = [f"results/ckplus/tinycnn/seed0/fold{k}/metrics.json" for k in (0, 1)]

    def snakemake(*args):
        return subprocess.run([str(BIN / "snakemake"), *args], cwd=proj, env=env, capture_output=True,
                              text=True, timeout=900)

    parent = str(paths.parent_record({"paths": {"results": "results"}}, "ckplus", "tinycnn"))
    out = snakemake("--cores", "2", *targets, parent)
    assert out.returncode == 0, out.stderr[-3000:]
    assert all((proj / t).is_file() for t in targets)
    assert "Nothing to be done" in snakemake("-n", *targets).stdout
    compare = subprocess.run([str(BIN / "fersnet"), "compare", "--experiment", "ckplus"], cwd=proj, env=env,
                             capture_output=True, text=True, timeout=300)
    assert compare.returncode == 0 and "Tiny CNN" in compare.stdout, compare.stderr[-2000:]
    with open(site / "fer_run" / "model.py", "a") as f:
        f.write("# an edit of the plugin's code\n")
    stale = snakemake("-n", *targets)
    assert stale.returncode == 0 and job_counts(stale.stdout)["train"] == 2, stale.stdout[-2000:]
    refused = subprocess.run([str(BIN / "fersnet"), "train", "--db", "ckplus", "--model", "tinycnn", "--fold", "0"],
                             cwd=proj, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "plugin.source" in refused.stderr, refused.stderr[-2000:]
    (site / "fer_run" / "spec.py").write_text("raise ImportError('cannot import name Conv9d')\n")
    broken = snakemake("-n", *targets)
    assert broken.returncode != 0
    line = next(ln for ln in (broken.stdout + broken.stderr).splitlines() if "model plugin" in ln)
    assert "'tinycnn' (entry point fer_run.spec:FER of fer_run 0.1): cannot load" in line and "Conv9d" in line


def test_external_models_train_like_built_in_ones_and_an_external_generator_renders_through_its_synthesize(
        on_path, tiny):
    import numpy as np
    import torch

    from fersnet import paths
    from fersnet.metrics.score import synthesize
    from fersnet.training.train import train_job

    on_path("run_ep", entry_points={"tinycnn": "run_ep.spec:FER", "tinygen": "run_ep.spec:GEN"})
    cfg = {**tiny, "models": ["tinycnn", "tinygen"]}
    fer = train_job(cfg, "ckplus", "tinycnn", 0)
    gen = train_job(cfg, "ckplus", "tinygen", 0)
    assert 0 <= fer["accuracy"] <= 1 and gen.get("accuracy") is None
    again = train_job(cfg, "ckplus", "tinycnn", 0, out=Path(cfg["paths"]["results"]) / "again")
    assert again["accuracy"] == fer["accuracy"]                     # same seed, same result
    ckpt = torch.load(paths.run_dir(cfg, "ckplus", "tinygen", 0) / paths.CHECKPOINT, weights_only=True)
    assert ckpt["meta"]["model"] == "tinygen" and any(k.startswith("gen.") for k in ckpt["model"])
    generate = registry.load_generator(paths.run_dir(cfg, "ckplus", "tinygen", 0))
    faces = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
    out = synthesize(generate, faces, np.arange(3), np.array([1, 2, 3]))
    assert out.shape == faces.shape and out.dtype == np.uint8


def test_the_example_package_declares_a_model_that_passes_the_check_and_trains(tmp_path, monkeypatch, tiny):
    import tomllib

    from fersnet.training.train import train_job

    example = ROOT / "examples" / "fersnet-tinycnn"
    project = tomllib.loads((example / "pyproject.toml").read_text())["project"]
    info = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    eps = project["entry-points"]["fersnet.models"]
    (info / "entry_points.txt").write_text("[fersnet.models]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(example))
    importlib.invalidate_caches()
    monkeypatch.setattr(catalog, "MODELS", dict(catalog.MODELS))
    monkeypatch.setattr(catalog, "_discovered", False)
    cfg = load(models=["fersnet", "tinycnn"])
    assert cfg["tinycnn"] == {"width": 32, "dropout": 0.2}
    assert catalog.model("tinycnn").origin.version == project["version"]
    registry.check_plugins(cfg)
    metrics = train_job({**tiny, "models": ["tinycnn"], "tinycnn": {"width": 4, "dropout": 0.0}}, "ckplus", "tinycnn", 0)
    assert 0 <= metrics["accuracy"] <= 1
