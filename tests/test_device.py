"""One device rule (fersnet/device.py): train, judge and score refuse a device this machine lacks
with the same one-line error naming the key, and the workflow's GPU decision."""
from __future__ import annotations

import pytest

from conftest import ROOT, write_processed
from fersnet import cli, config, device, gpu_slots
from fersnet.errors import DeviceError

torch = pytest.importorskip("torch")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_cpu_and_auto_resolve_to_a_torch_device():
    assert device.resolve("cpu") == torch.device("cpu")
    assert device.resolve("cuda", "cpu") == torch.device("cpu")       # --device overrides train.device
    want = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert device.resolve("auto") == torch.device(want) == device.resolve(None)


@no_cuda
def test_missing_cuda_names_the_key_that_asked_for_it():
    with pytest.raises(DeviceError, match=r"^`train.device` is cuda but no CUDA device is available$"):
        device.resolve("cuda")
    with pytest.raises(DeviceError, match=r"^`--device` is cuda but no CUDA device is available$"):
        device.resolve("auto", "cuda")


def test_config_and_cli_offer_the_same_choices(capsys):
    with pytest.raises(config.ConfigError, match="train.device"):
        config.load(ROOT / "params.yaml", "test", config.parse_sets(["train.device=tpu"]))
    with pytest.raises(SystemExit):
        cli.main(["judge", "--params", str(ROOT / "params.yaml"), "--db", "ckplus", "--fold", "0", "--device", "tpu"])
    assert "choose from " + ", ".join(f"'{c}'" for c in device.CHOICES) in capsys.readouterr().err


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A processed `ckplus` (no run, no judge: the device is refused before either is needed)."""
    tmp = tmp_path_factory.mktemp("project")
    sets = [f"preprocess.out={tmp / 'processed'}", f"paths.results={tmp / 'results'}", "mlflow.enabled=false"]
    cfg = config.load(ROOT / "params.yaml", "test", config.parse_sets(sets))
    write_processed(tmp / "processed" / "ckplus", size=cfg["preprocess"]["size"])
    argv = ["--params", str(ROOT / "params.yaml"), "--profile", "test", "--db", "ckplus", "--fold", "0"]
    return tmp, argv + [x for s in sets for x in ("--set", s)]


VERBS = {"train": ["--model", "fersnet"], "judge": [], "score": ["--model", "fersnet"]}


@no_cuda
@pytest.mark.parametrize("how, key", [(["--device", "cuda"], "--device"), (["--set", "train.device=cuda"], "train.device")])
def test_train_judge_and_score_refuse_missing_cuda_alike(project, capsys, how, key):
    tmp, argv = project
    for verb, extra in VERBS.items():
        code = cli.main([verb, *argv, *extra, *how])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, (verb, err)
        assert err[-1] == f"fersnet {verb}: error: `{key}` is cuda but no CUDA device is available", verb
        assert "Traceback" not in "\n".join(err)
    assert not any((tmp / "results").rglob("metrics.json"))      # nothing was trained or scored


@pytest.mark.parametrize("setting, found, gpus, uses", [
    ("auto", "0,1", ["0", "1"], True), ("auto", "", [], False), ("cuda", "0", ["0"], True),
    ("cuda", "", [], True), ("mps", "0", [], True), ("cpu", "0,1", [], False)])
def test_the_workflow_gpu_decision(monkeypatch, setting, found, gpus, uses):
    monkeypatch.setenv(gpu_slots.ENV_DEVICES, found)       # the GPUs this machine offers
    assert device.workflow_gpus(setting) == gpus
    assert device.uses_gpu(setting, gpus) is uses
