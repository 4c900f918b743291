"""The CLI's one-line errors: fold ranges, unusable checkpoints under `fersnet score`, and the
permissions of the folders fersnet creates. Everything runs through `fersnet.cli.main`."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from conftest import ROOT, write_processed
from fersnet import cli


def run(argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, stderr) of `fersnet <argv>`; argparse's own errors exit through SystemExit."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


# --fold
def test_fold_range_running_downwards_is_called_empty_not_negative(capsys):
    code, err = run(["train", "--params", str(ROOT / "params.yaml"), "--db", "ckplus", "--model", "fersnet",
                     "--fold", "3-1"], capsys)
    assert code == 2
    assert "the range 3-1 is empty (it runs downwards); write it low-high, e.g. 1-3" in err
    assert "non-negative" not in err


def test_fold_that_is_not_a_number_is_named(capsys):
    code, err = run(["judge", "--params", str(ROOT / "params.yaml"), "--db", "ckplus", "--fold", "0,x"], capsys)
    assert code == 2 and "'x' is not a fold, nor a range of folds" in err


# checkpoints under `fersnet score`
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A processed `ckplus` and a trained judge of fold 0 (the test profile: one epoch)."""
    tmp = tmp_path_factory.mktemp("project")
    sets = [f"preprocess.out={tmp / 'processed'}", f"paths.results={tmp / 'results'}", "mlflow.enabled=false"]
    argv = ["--params", str(ROOT / "params.yaml"), "--profile", "test", "--db", "ckplus"]
    argv += [x for s in sets for x in ("--set", s)]
    from fersnet import config
    cfg = config.load(ROOT / "params.yaml", "test", config.parse_sets(sets))
    write_processed(tmp / "processed" / "ckplus", size=cfg["preprocess"]["size"])
    assert cli.main(["judge", *argv, "--fold", "0"]) == 0
    return tmp, argv, cfg


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a checkpoint\n" * 10)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    import torch
    torch.save({"meta": {"model": "fersnet"}, "model": {"w": torch.zeros(64, 64)}}, path)
    path.write_bytes(path.read_bytes()[:2000])


def _foreign_state_dict(path: Path) -> None:
    import torch
    torch.save({"conv1.weight": torch.zeros(8, 1, 3, 3)}, path)      # a plain PyTorch state dict


def _tensor(path: Path) -> None:
    import torch
    torch.save(torch.zeros(3), path)


CHECKPOINTS = {
    _garbage: "cannot be read as a {what} checkpoint: corrupt, truncated or not written by fersnet",
    _empty: "cannot be read as a {what} checkpoint",
    _truncated: "cannot be read as a {what} checkpoint",
    _foreign_state_dict: "not a {what} checkpoint",
    _tensor: "holds a Tensor, not a {what} checkpoint",
}


def _one_line_error(err: str, path: Path) -> str:
    lines = [line for line in err.splitlines() if line.startswith("fersnet score: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0]
    return lines[0]


@pytest.mark.parametrize("write, words", CHECKPOINTS.items(), ids=[f.__name__[1:] for f in CHECKPOINTS])
def test_score_names_an_unusable_generator_checkpoint_in_one_line(project, capsys, write, words):
    tmp, argv, cfg = project
    run_dir = tmp / "results" / "ckplus" / "fersnet" / "seed0" / "fold0"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg))
    (run_dir / "metrics.json").write_text(json.dumps({"db": "ckplus", "model": "fersnet", "fold": 0}))
    write(run_dir / "checkpoint.pt")
    code, err = run(["score", *argv, "--model", "fersnet", "--fold", "0"], capsys)
    assert code == 2
    assert words.format(what="generator") in _one_line_error(err, run_dir / "checkpoint.pt")


@pytest.mark.parametrize("write, words", CHECKPOINTS.items(), ids=[f.__name__[1:] for f in CHECKPOINTS])
def test_score_names_an_unusable_judge_checkpoint_in_one_line(project, capsys, write, words):
    tmp, argv, _ = project
    judge = tmp / "results" / "ckplus" / "judge" / "seed0" / "fold0"
    good = (judge / "checkpoint.pt").read_bytes()
    try:
        write(judge / "checkpoint.pt")
        code, err = run(["score", *argv, "--model", "no_mtl", "--fold", "0"], capsys)
    finally:
        (judge / "checkpoint.pt").write_bytes(good)
    assert code == 2
    what = "judge checkpoint of this version" if write is _foreign_state_dict else "judge checkpoint"
    assert words.format(what="judge").replace("judge checkpoint", what) in _one_line_error(err, judge / "checkpoint.pt")


# permissions
def test_folders_fersnet_creates_follow_the_umask(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        out = tmp_path / "made" / "by" / "fersnet"
        code, err = run(["synth", "--params", str(ROOT / "params.yaml"), "--profile", "test", "--db", "ckplus",
                         "--out", str(out / "synthetic"), "--set", "synth.subjects=10", "--set", "synth.frames=4"],
                        capsys)
        assert code == 0, err
        code, err = run(["preprocess", "--params", str(ROOT / "params.yaml"), "--profile", "test", "--db", "ckplus",
                         "--root", str(out / "synthetic" / "ckplus"), "--out", str(out / "processed" / "ckplus")],
                        capsys)
        assert code == 0, err
    finally:
        os.umask(old)
    folders = [tmp_path / "made", *(p for p in (tmp_path / "made").rglob("*") if p.is_dir())]
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in folders}
    assert set(modes.values()) == {"0o755"}, {k: v for k, v in modes.items() if v != "0o755"}


def test_version_names_the_package_and_the_code_version(capsys):
    from fersnet import __version__, provenance
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"fersnet-bench {__version__} (code {provenance.code_label(provenance.code_version())})"


def test_each_verbs_help_opens_with_what_it_does(capsys):
    parser = cli.build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    assert set(verbs) == set(cli.VERBS)
    for name, sub in verbs.items():
        assert sub.description and sub.description.endswith("."), name
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        assert sub.description in " ".join(capsys.readouterr().out.split()), name


def test_compare_help_says_percent_once_as_a_person_writes_it(capsys):
    with pytest.raises(SystemExit):
        cli.main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "accuracies in %," in text and "%%" not in text


def test_help_and_version_answer_beside_a_broken_params_yaml_which_other_verbs_refuse(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("profile: [\n")
    for argv in (["--help"], ["train", "--help"], ["--version"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        out, err = capsys.readouterr()
        assert exit_.value.code == 0 and out.strip(), argv
        assert err.startswith("fersnet: note: params.yaml: not valid YAML"), err
    assert cli.main(["status"]) == 2
    assert capsys.readouterr().err.startswith("fersnet: error: params.yaml: not valid YAML")
