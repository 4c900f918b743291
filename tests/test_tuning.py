"""Honest tuning: the documented way to choose a setting on validation subjects (docs/training.md,
"Tuning a setting"), run as written at the test profile."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import write_processed
from fersnet import config, paths
from fersnet.cli import main

ROOT = Path(__file__).resolve().parents[1]
TRAINING_MD = (ROOT / "docs" / "training.md").read_text()


def tuning_commands() -> tuple[str, str]:
    """The two lines of the code block of docs/training.md's "Tuning a setting" section."""
    section = TRAINING_MD.split("## Tuning a setting", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    train, read = block.strip().splitlines()
    return train, read


def test_the_documented_tuning_commands_select_on_validation_subjects_and_report_their_mean(test_cfg, tmp_path, monkeypatch):
    train, read = tuning_commands()
    assert train.startswith("fersnet train ") and "--set train.selection=val" in train
    cfg = dict(test_cfg)
    write_processed(Path(cfg["preprocess"]["out"]) / "ckplus", n_subjects=10, size=24)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(config.params_view(cfg)))
    monkeypatch.chdir(tmp_path)                         # results/tune/... as a user's project would
    argv = shlex.split(train)[1:]
    assert main([argv[0], "--params", "params.yaml", *argv[1:]]) == 0

    run_cfg = config.load(tmp_path / "params.yaml", overrides=config.parse_sets(
        [a for a in argv[argv.index("--set") :] if a != "--set"]))
    vals = []
    for fold in range(cfg["n_folds"]):
        run = paths.run_dir(run_cfg, "ckplus", "fersnet", fold)
        assert run.parts[:2] == ("results", "tune")                   # relative to the project
        metrics = json.loads((run / paths.METRICS).read_text())
        hist = pd.read_csv(run / paths.HISTORY)
        assert metrics["selection"] == "val" and metrics["val_accuracy"] == hist["val_acc"].max()
        assert metrics["selected_epoch"] == int(hist.loc[hist["val_acc"].idxmax(), "epoch"])
        vals.append(metrics["val_accuracy"])

    out = subprocess.run(shlex.split(read.replace("python", sys.executable, 1)), cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx(sum(vals) / len(vals))


def test_val_accuracy_is_null_when_the_last_epoch_is_taken(test_cfg):
    from fersnet.training.train import train_job
    write_processed(Path(test_cfg["preprocess"]["out"]) / "ckplus", n_subjects=10, size=24)
    metrics = train_job(test_cfg, "ckplus", "fersnet", 0)
    assert metrics["selection"] == "last" and metrics["val_accuracy"] is None
