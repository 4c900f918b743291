"""Ownership and crash hygiene (fersnet/ownership.py, docs/architecture.md "Ownership and crashes").

The unit tests use real folders and real processes (a child's PID that has exited); the
end-to-end tests run the `fersnet` CLI in subprocesses, kill it with SIGKILL at named points
(FERSNET_PAUSE_AT) and run it again.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fersnet import config, ownership
from fersnet.errors import FersnetError

STEP = ownership.step("synth", "ckplus")         # what made the folders of the unit tests


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def leftover_name(name: str, kind: str, pid: int) -> str:
    """A temporary's name as another fersnet process with `pid` on this machine writes it."""
    ours = ownership.temp_name(name, kind)
    return ours.replace(f"-{os.getpid()}-", f"-{pid}-", 1)


def test_a_new_folder_is_marked_with_what_made_it(tmp_path):
    folder = ownership.claim_folder(tmp_path / "a" / "b", STEP)
    assert ownership.owned(folder) and ownership.owned(tmp_path / "a")
    assert not ownership.owned(tmp_path)                     # existed before: not fersnet's
    assert f'"made_by": "{STEP}"' in (folder / ownership.MARKER).read_text()


def test_created_folders_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        folder = ownership.create_dirs(tmp_path / "x" / "y", STEP)
        tmp = ownership.make_temp_dir(folder, "z", STEP)
    finally:
        os.umask(old)
    for p in (folder, folder.parent, tmp):
        assert stat.S_IMODE(p.stat().st_mode) == 0o755, p


def test_a_folder_with_foreign_files_is_refused_and_named(tmp_path):
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("\\documentclass{book}")
    with pytest.raises(FersnetError, match=r"thesis: holds files fersnet did not create .*pick another --out, or empty it"):
        ownership.check_replaceable(thesis, STEP)
    with pytest.raises(FersnetError, match="thesis"):
        ownership.claim_folder(thesis, STEP)
    assert not ownership.owned(thesis)


def test_an_empty_or_marked_folder_is_replaceable(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    ownership.check_replaceable(empty, STEP)
    ownership.check_replaceable(tmp_path / "absent", STEP)
    marked = ownership.claim_folder(tmp_path / "marked", STEP)
    (marked / "images.npy").write_bytes(b"x")
    ownership.check_replaceable(marked, STEP)


def test_swap_in_replaces_a_marked_folder_and_leaves_no_old_copy(tmp_path):
    final = ownership.claim_folder(tmp_path / "out", STEP)
    (final / "old.txt").write_text("old")
    staging = ownership.make_temp_dir(tmp_path, "out", STEP)
    (staging / "new.txt").write_text("new")
    ownership.swap_in(staging, final, STEP)
    assert sorted(p.name for p in final.iterdir()) == [ownership.MARKER, "new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_swap_in_refuses_a_foreign_folder_and_changes_nothing(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "thesis.tex").write_text("mine")
    staging = ownership.make_temp_dir(tmp_path, "out", STEP)
    with pytest.raises(FersnetError, match="out: holds files"):
        ownership.swap_in(staging, final, STEP)
    assert (final / "thesis.tex").read_text() == "mine"


def test_swap_in_without_an_atomic_exchange_also_keeps_the_old_folder_until_the_new_one_is_in(tmp_path, monkeypatch):
    monkeypatch.setattr(ownership, "_exchange", lambda a, b: False)
    final = ownership.claim_folder(tmp_path / "out", STEP)
    (final / "v").write_text("1")
    staging = ownership.make_temp_dir(tmp_path, "out", STEP)
    (staging / "v").write_text("2")
    ownership.swap_in(staging, final, STEP)
    assert (final / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_clean_temps_removes_dead_processes_leftovers_whatever_their_pid(tmp_path):
    run = ownership.claim_folder(tmp_path / "results" / "fold0", STEP)
    pid, other = dead_pid(), dead_pid()
    names = [leftover_name("checkpoint.pt", "tmp", pid), leftover_name("history.csv", "tmp", other)]
    for n in names:
        (run / n).write_bytes(b"partial")
    staging = run.parent / leftover_name("fold1", "tmp", pid)
    staging.mkdir()
    ownership.mark(staging, STEP)
    (staging / "images.npy").write_bytes(b"partial")
    removed = ownership.clean_temps(tmp_path / "results")
    assert sorted(p.name for p in removed) == sorted(names + [staging.name])
    assert sorted(p.name for p in run.iterdir()) == [ownership.MARKER]
    assert sorted(p.name for p in run.parent.iterdir()) == [ownership.MARKER, "fold0"]


def test_clean_temps_keeps_a_running_jobs_temporaries(tmp_path):
    run = ownership.claim_folder(tmp_path / "fold0", STEP)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as live:
        try:
            (run / leftover_name("checkpoint.pt", "tmp", live.pid)).write_bytes(b"being written")
            (run / ownership.temp_name("metrics.json")).write_bytes(b"this process")
            assert ownership.clean_temps(run) == []
        finally:
            live.kill()
    assert len(list(run.iterdir())) == 3


def test_clean_temps_touches_nothing_in_a_folder_fersnet_did_not_create(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    odd = mine / leftover_name("notes.txt", "tmp", dead_pid())
    odd.write_text("a file that happens to look like a temporary")
    assert ownership.clean_temps(mine) == [] and odd.exists()


def test_clean_temps_puts_back_an_old_folder_when_the_new_one_never_arrived(tmp_path):
    parent = ownership.claim_folder(tmp_path / "processed", STEP)
    old = parent / leftover_name("ckplus", "old", dead_pid())
    old.mkdir()
    ownership.mark(old, STEP)
    (old / "images.npy").write_text("complete")
    ownership.clean_temps(parent / "ckplus")
    assert (parent / "ckplus" / "images.npy").read_text() == "complete"
    assert sorted(p.name for p in parent.iterdir()) == [ownership.MARKER, "ckplus"]


def test_only_the_one_temp_name_pattern_counts_as_a_temporary(tmp_path):
    run = ownership.claim_folder(tmp_path / "fold0", STEP)
    pid = dead_pid()
    other = [f".checkpoint.pt.tmp{pid}", f".history.csv.tmp-{pid}", ".build-a1b2c3d4", ".scores.json.a1b2c3d4"]
    for n in other:
        (run / n).write_bytes(b"not named by ownership.temp_name")
    assert [n for n in other if ownership._parse(n)] == []
    assert ownership._parse(ownership.temp_name("checkpoint.pt"))[:3] == ("checkpoint.pt", "tmp", os.getpid())
    assert ownership.clean_temps(run) == []
    assert sorted(p.name for p in run.iterdir()) == sorted([ownership.MARKER] + other)


# The safe-write primitives: a file (write_bytes/write_text/write_json) and a folder (build_aside).

def test_write_bytes_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    ownership.write_bytes(target, b"new \x00 bytes")
    assert target.read_bytes() == b"new \x00 bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_write_json_and_write_text_write_exactly_the_text(tmp_path):
    obj = {"b": 1, "a": [0.5, None, "é"], "nan": float("nan")}
    ownership.write_json(tmp_path / "x.json", obj)
    assert (tmp_path / "x.json").read_text() == json.dumps(obj, indent=2) + "\n"
    ownership.write_text(tmp_path / "t.txt", "line ü\n")
    assert (tmp_path / "t.txt").read_bytes() == "line ü\n".encode()


def test_a_write_that_fails_midway_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "scores.json"
    target.write_text('{"old": true}\n')
    with pytest.raises(ValueError, match="JSON compliant"):
        ownership.write_json(target, {"fid": float("nan")}, allow_nan=False)
    with pytest.raises(TypeError):
        ownership.write_bytes(target, "text where bytes were due")     # fails inside the open temporary
    assert target.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]


def test_a_write_creates_marked_folders_only_when_told_what_makes_them(tmp_path):
    with pytest.raises(FileNotFoundError):
        ownership.write_text(tmp_path / "a" / "b.txt", "x")
    assert list(tmp_path.iterdir()) == []
    ownership.write_text(tmp_path / "a" / "b.txt", "x", STEP)
    assert (tmp_path / "a" / "b.txt").read_text() == "x" and ownership.maker(tmp_path / "a") == STEP


def test_a_write_killed_before_its_rename_leaves_the_old_file_then_its_temporary_is_cleaned(tmp_path):
    folder = ownership.claim_folder(tmp_path / "run", STEP)
    target = folder / "checkpoint.pt"
    target.write_bytes(b"epoch 1")
    code = f"from fersnet import ownership; ownership.write_bytes({str(target)!r}, b'epoch 2 ' * 1000)"
    env = {**os.environ, ownership.PAUSE_ENV: "write:checkpoint.pt", ownership.PAUSE_SECONDS_ENV: "120"}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env)
    assert "paused at write:checkpoint.pt" in proc.stderr.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    (tmp,) = [p for p in folder.iterdir() if ownership._parse(p.name)]
    assert tmp.read_bytes() == b"epoch 2 " * 1000 and target.read_bytes() == b"epoch 1"
    assert ownership.clean_temps(folder) == [tmp]
    assert sorted(p.name for p in folder.iterdir()) == [ownership.MARKER, "checkpoint.pt"]


def test_build_aside_swaps_the_new_folder_in_whole(tmp_path):
    final = ownership.claim_folder(tmp_path / "out", STEP)
    (final / "old.txt").write_text("old")
    with ownership.build_aside(final, STEP) as staging:
        assert staging.parent == tmp_path and ownership._parse(staging.name)[:2] == ("out", "tmp")
        (staging / "new.txt").write_text("new")
        assert (final / "old.txt").read_text() == "old"        # the old one stays until the end
    assert sorted(p.name for p in final.iterdir()) == [ownership.MARKER, "new.txt"]
    assert ownership.maker(final) == STEP and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_build_aside_refuses_a_foreign_or_other_steps_folder_before_any_work(tmp_path):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine")
    other = ownership.claim_folder(tmp_path / "run", ownership.step("train", "ckplus", "fersnet", "seed0", "fold0"))
    (other / "metrics.json").write_text("{}")
    before = snapshot(tmp_path)
    for folder, why in ((foreign, "holds files fersnet did not create"), (other, "output of `fersnet train")):
        with pytest.raises(ownership.ForeignFolder, match=why):
            with ownership.build_aside(folder, STEP):
                raise AssertionError("the block must not run")
    assert snapshot(tmp_path) == before


def test_build_aside_keeps_the_old_folder_when_the_build_fails_or_is_not_done(tmp_path):
    final = ownership.claim_folder(tmp_path / "out", STEP)
    (final / "metrics.json").write_text("old")
    with pytest.raises(RuntimeError, match="the build failed"):
        with ownership.build_aside(final, STEP) as staging:
            (staging / "metrics.json").write_text("half")
            raise RuntimeError("the build failed")
    with ownership.build_aside(final, STEP, done="metrics.json") as staging:
        (staging / "checkpoint.pt").write_text("stopped before metrics.json")
    assert (final / "metrics.json").read_text() == "old" and not (final / "checkpoint.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# Through the real CLI: foreign folders, configured data roots, and SIGKILL at named points.

import copy
import hashlib
import json
import shutil
import signal

import yaml

from conftest import ROOT, write_processed
from fersnet import cli, paths

FERSNET = str(Path(sys.executable).with_name("fersnet"))     # the venv's console script


def snapshot(folder: Path) -> dict:
    """Every file and folder under `folder` with its content hash (folders: None)."""
    return {p.relative_to(folder).as_posix(): (hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def temporaries(folder: Path) -> list[str]:
    """Every leftover of an interrupted run (temporary or old copy) anywhere under `folder`."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if ownership._parse(p.name))


def fersnet(params: Path, *argv: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([FERSNET, argv[0], "--params", str(params), *argv[1:]], cwd=ROOT, text=True,
                          capture_output=True, env=env, timeout=300)


def kill_at(params: Path, point: str, *argv: str) -> str:
    """Run `fersnet <argv>` until it pauses at `point` (FERSNET_PAUSE_AT), then SIGKILL it."""
    env = {**os.environ, ownership.PAUSE_ENV: point, ownership.PAUSE_SECONDS_ENV: "120"}
    proc = subprocess.Popen([FERSNET, argv[0], "--params", str(params), *argv[1:]], cwd=ROOT, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if f"paused at {point}" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"never paused at {point}:\n{''.join(seen)}"
    return "".join(seen)


def write_params(cfg: dict, tmp_path: Path) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(config.params_view(cfg)))
    return params


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """A small CK+ stand-in written once by `fersnet synth` (in-process), marked as fersnet's."""
    from fersnet import config
    from fersnet.data.synth import write_database
    cfg = config.load(ROOT / "params.yaml", profile="test")
    cfg["synth"]["image_scale"] = 0.2
    out = tmp_path_factory.mktemp("standin")
    return Path(write_database(cfg, "ckplus", out)["root"])


@pytest.fixture
def licensed(standin, tmp_path, test_cfg):
    """A (mock) licensed CK+ copy: the stand-in's files without the marker, configured as data.ckplus.root."""
    root = tmp_path / "licensed" / "ckplus"
    shutil.copytree(standin, root, ignore=shutil.ignore_patterns(ownership.MARKER))
    test_cfg["data"]["ckplus"]["root"] = str(root)
    return root


def test_preprocess_into_a_folder_of_foreign_files_keeps_them_and_names_the_folder(standin, test_cfg, tmp_path):
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("\\documentclass{book}")
    (thesis / "chapters" / "intro.tex").write_text("\\chapter{Intro}")
    before = snapshot(thesis)
    run = fersnet(write_params(test_cfg, tmp_path), "preprocess", "--db", "ckplus", "--root", str(standin),
                  "--out", str(thesis))
    assert run.returncode != 0 and str(thesis) in run.stderr and "empty it" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert snapshot(thesis) == before


def test_synth_over_a_licensed_copy_keeps_it_and_names_the_folder(licensed, test_cfg, tmp_path):
    before = snapshot(licensed)
    run = fersnet(write_params(test_cfg, tmp_path), "synth", "--db", "ckplus", "--out", str(licensed.parent))
    assert run.returncode != 0 and str(licensed) in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert snapshot(licensed) == before
    assert sorted(p.name for p in licensed.parent.iterdir()) == ["ckplus"]


def test_a_configured_data_root_is_never_modified(licensed, test_cfg, tmp_path):
    test_cfg["synth"]["image_scale"] = 0.2
    params = write_params(test_cfg, tmp_path)
    before = snapshot(licensed.parent)
    attempts = [("synth", "--db", "ckplus", "--out", str(licensed)),                  # writing into it
                ("synth", "--db", "oulu", "--out", str(licensed)),
                ("preprocess", "--db", "ckplus", "--out", str(licensed / "processed")),
                ("preprocess", "--db", "ckplus", "--root", str(tmp_path / "elsewhere"), "--out", str(licensed))]
    for argv in attempts:
        run = fersnet(params, *argv)
        assert run.returncode != 0 and str(licensed) in run.stderr, (argv, run.stderr)
    assert fersnet(params, "preprocess", "--db", "ckplus").returncode == 0     # reading it is fine
    assert snapshot(licensed.parent) == before
    assert ownership.owned(paths.processed_dir(test_cfg, "ckplus"))


def test_synth_killed_while_swapping_in_a_new_stand_in_then_rerun(test_cfg, tmp_path):
    test_cfg["synth"]["image_scale"] = 0.2
    params = write_params(test_cfg, tmp_path)
    assert fersnet(params, "synth", "--db", "ckplus").returncode == 0
    kill_at(params, "swapped:ckplus", "synth", "--db", "ckplus")
    assert temporaries(tmp_path)                      # the old stand-in, not yet removed
    assert cli.main(["synth", "--params", str(params), "--db", "ckplus"]) == 0
    assert temporaries(tmp_path) == [] and ownership.owned(paths.raw_dir(test_cfg, "ckplus"))


def test_preprocess_killed_before_its_swap_then_rerun(standin, test_cfg, tmp_path):
    test_cfg["data"]["ckplus"]["root"] = str(standin)
    params = write_params(test_cfg, tmp_path)
    kill_at(params, "swap:ckplus", "preprocess", "--db", "ckplus")
    assert not paths.processed_dir(test_cfg, "ckplus").exists() and temporaries(tmp_path)
    assert cli.main(["preprocess", "--params", str(params), "--db", "ckplus"]) == 0
    out = paths.processed_dir(test_cfg, "ckplus")
    assert (out / paths.PREP_SUMMARY).is_file() and stat.S_IMODE(out.stat().st_mode) == 0o777 & ~_umask()
    assert temporaries(tmp_path) == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture
def tiny(test_cfg, tmp_path, monkeypatch):
    """A params file for one fast fold (fixture database, 1 epoch, one model) and no Inception weights."""
    cfg = copy.deepcopy(test_cfg)
    cfg["train"].update(crop=16, batch_size=32, epochs=1)
    cfg["judge"]["epochs"] = 1
    cfg.update(databases=["ckplus"], models=["fersnet"])
    write_processed(Path(cfg["preprocess"]["out"]) / "ckplus", n_subjects=10, size=24)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))       # FID unavailable, fast
    return cfg, write_params(cfg, tmp_path)


def test_train_killed_while_writing_its_checkpoint_then_rerun(tiny, tmp_path):
    cfg, params = tiny
    job = ("train", "--db", "ckplus", "--model", "fersnet", "--fold", "0")
    kill_at(params, "write:checkpoint.pt", *job)
    run = paths.run_dir(cfg, "ckplus", "fersnet", 0)
    assert [p.name for p in run.iterdir() if p.name.startswith(".checkpoint.pt.tmp-")]
    assert cli.main([job[0], "--params", str(params), *job[1:]]) == 0
    assert (run / paths.METRICS).is_file() and ownership.owned(run)
    assert temporaries(tmp_path) == []


@pytest.mark.slow
def test_score_killed_while_staging_then_rerun(tiny, tmp_path):
    from fersnet.metrics.judge import train_judge
    from fersnet.training.train import train_job
    cfg, params = tiny
    quiet = lambda msg: None
    train_job(cfg, "ckplus", "fersnet", 0, log=quiet)
    kill_at(params, "swap:fold0", "judge", "--db", "ckplus", "--fold", "0")
    assert cli.main(["judge", "--params", str(params), "--db", "ckplus", "--fold", "0"]) == 0
    job = ("score", "--db", "ckplus", "--model", "fersnet", "--fold", "0")
    kill_at(params, "write:scores.json", *job)
    syn = paths.synthesis_dir(cfg, "ckplus", "fersnet", 0)
    assert not syn.exists() and [p.name for p in syn.parent.iterdir() if p.name.startswith(".synthesis.tmp-")]
    assert cli.main([job[0], "--params", str(params), *job[1:]]) == 0
    assert (syn / paths.SCORES).is_file() and ownership.owned(syn)
    assert temporaries(tmp_path) == []


@pytest.mark.slow
def test_report_killed_during_its_install_then_rerun(tiny, tmp_path):
    from fersnet.training.train import train_job
    cfg, params = tiny
    train_job(cfg, "ckplus", "fersnet", 0, log=lambda msg: None)
    out = paths.reports_dir(cfg)
    kill_at(params, "swap:reports", "report")               # built, not installed: no report yet
    assert not out.exists() and temporaries(tmp_path)
    assert cli.main(["report", "--params", str(params)]) == 0
    first = json.loads((out / "summary.json").read_text())["measured"]["ckplus"]
    kill_at(params, "swapped:reports", "report")            # new one in place, old one not yet removed
    assert temporaries(tmp_path)
    assert json.loads((out / "summary.json").read_text())["measured"]["ckplus"] == first
    assert cli.main(["report", "--params", str(params)]) == 0
    assert {p.name for p in out.iterdir()} - {"report.pdf"} == {      # the PDF where pdflatex is installed
        ownership.MARKER, "summary.json", "headline.json", "report.tex", "tables", "figures", "plots"}
    assert temporaries(tmp_path) == []


def test_a_processed_folder_written_before_markers_is_taken_over(test_cfg, tmp_path):
    from fersnet.data.preprocess import EARLIER, preprocess
    from fersnet.data.synth import write_database
    cfg = copy.deepcopy(test_cfg)
    cfg["synth"]["image_scale"] = 0.2
    root = write_database(cfg, "ckplus", tmp_path / "synthetic")["root"]
    out = tmp_path / "processed" / "ckplus"
    out.mkdir(parents=True)
    for name in EARLIER:
        (out / name).write_text("an earlier version's output")
    preprocess(cfg, "ckplus", root=root, out=out)
    assert ownership.owned(out) and (out / paths.IMAGES).read_bytes() != b"an earlier version's output"


# Ownership by kind: a verb replaces or deletes only the folders of its own step; every other step's
# output is refused like a foreign folder (docs/architecture.md, "Ownership and crashes").

@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """One finished output of every step, each made by the real CLI (test profile, one fold, one
    epoch, no Inception weights), plus two reports written where a judge and a scoring job of
    another results root would go."""
    from fersnet import config
    top = tmp_path_factory.mktemp("grid")
    cfg = config.load(ROOT / "params.yaml", profile="test")
    cfg["synth"].update(out=str(top / "synthetic"), image_scale=0.2)
    for db in ("ckplus", "oulu", "mmi"):
        cfg["data"][db]["root"] = str(top / "synthetic" / db)
    cfg["preprocess"]["out"] = str(top / "processed")
    cfg["paths"].update(results=str(top / "results"), reports=str(top / "reports"))
    cfg["mlflow"]["enabled"] = False
    cfg["train"].update(crop=16, batch_size=32, epochs=1)
    cfg["judge"]["epochs"] = 1
    cfg.update(databases=["ckplus"], models=["fersnet"])
    params = write_params(cfg, top)
    env = {**os.environ, "TORCH_HOME": str(top / "torch-home")}           # FID unavailable, fast
    alt = top / "alt"                  # another results root, whose judge and synthesis paths hold reports
    jobs = [("synth", "--db", "ckplus"), ("preprocess", "--db", "ckplus"),
            ("train", "--db", "ckplus", "--model", "fersnet", "--fold", "0"),
            ("judge", "--db", "ckplus", "--fold", "0"), ("score", "--db", "ckplus", "--model", "fersnet", "--fold", "0"),
            ("report",), ("report", "--set", f"paths.reports={alt / 'ckplus/judge/seed0/fold0'}"),
            ("report", "--set", f"paths.reports={alt / 'ckplus/fersnet/seed0/fold0/synthesis'}")]
    for argv in jobs:
        run = fersnet(params, *argv, env=env)
        assert run.returncode == 0, (argv, run.stderr)
    return cfg, params, env, top


def _attempts(cfg, top):
    run = paths.run_dir(cfg, "ckplus", "fersnet", 0)
    judge = paths.judge_dir(cfg, "ckplus", 0)
    synthesis = paths.synthesis_dir(cfg, "ckplus", "fersnet", 0)
    processed = paths.processed_dir(cfg, "ckplus")
    standin = paths.raw_dir(cfg, "ckplus")
    reports = paths.reports_dir(cfg)
    alt = top / "alt"
    train = ("train", "--db", "ckplus", "--model", "fersnet", "--fold")
    return [  # (command line, the folder it would have replaced, the step that made that folder, named)
        (("preprocess", "--db", "ckplus", "--out", str(judge)), judge, "judge"),
        (("preprocess", "--db", "ckplus", "--out", str(run)), run, "train"),
        (("preprocess", "--db", "ckplus", "--out", str(reports)), reports, "report"),
        (("preprocess", "--db", "ckplus", "--out", str(standin)), standin, None),    # its own input
        (("synth", "--db", "ckplus", "--out", str(processed.parent)), processed, "preprocess"),
        (("synth", "--db", "ckplus", "--out", str(paths.seed_dir(cfg, "ckplus", "fersnet").parent.parent.parent)),
         run.parents[2], "train"),
        (("report", "--set", f"paths.reports={run}"), run, "train"),
        (("report", "--set", f"paths.reports={synthesis}"), synthesis, "score"),
        (("report", "--set", f"paths.reports={processed}"), processed, "preprocess"),
        (("report", "--set", f"paths.reports={standin}"), standin, "synth"),
        (("report", "--set", f"paths.reports={cfg['paths']['results']}"), Path(cfg["paths"]["results"]), "train"),
        ((*train, "0", "--out", str(judge)), judge, "judge"),
        ((*train, "0", "--out", str(processed), "--force"), processed, "preprocess"),
        ((*train, "0", "--out", str(reports)), reports, "report"),
        ((*train, "1", "--out", str(run), "--force"), run, "train"),            # another fold's run
        (("train", "--db", "ckplus", "--model", "stargan", "--fold", "0", "--out", str(run)), run, "train"),
        (("judge", "--db", "ckplus", "--fold", "0", "--set", f"paths.results={alt}"),
         alt / "ckplus/judge/seed0/fold0", "report"),
        (("score", "--db", "ckplus", "--model", "fersnet", "--fold", "0", "--set", f"paths.results={alt}"),
         alt / "ckplus/fersnet/seed0/fold0/synthesis", "report"),
    ]


@pytest.mark.slow
def test_no_verb_replaces_another_steps_output(grid):
    cfg, params, env, top = grid
    before = snapshot(top)
    for argv, target, maker in _attempts(cfg, top):
        run = fersnet(params, *argv, env=env)
        assert run.returncode != 0, (argv, run.stderr)
        assert str(target) in run.stderr and "Traceback" not in run.stderr, (argv, run.stderr)
        assert maker is None or f"output of `fersnet {maker}" in run.stderr, (argv, run.stderr)
        assert snapshot(top) == before, argv              # nothing written, replaced or deleted
    # the same steps still replace their own outputs
    assert fersnet(params, "report", env=env).returncode == 0
    run = fersnet(params, "preprocess", "--db", "ckplus", env=env)
    assert run.returncode == 0, run.stderr
    assert ownership.maker(paths.processed_dir(cfg, "ckplus")) == "fersnet preprocess ckplus"


def test_a_marker_names_the_step_and_older_markers_keep_their_verb(tmp_path):
    train0 = ownership.step("train", "ckplus", "fersnet", "seed0", "fold0")
    assert train0 == "fersnet train ckplus/fersnet/seed0/fold0"
    assert ownership.same_step(train0, train0)
    assert not ownership.same_step(ownership.step("train", "ckplus", "fersnet", "seed0", "fold1"), train0)
    assert not ownership.same_step(ownership.step("judge", "ckplus", "seed0", "fold0"), train0)
    # a marker of a version that recorded only the verb, or a taken-over folder, keeps its verb's folders
    assert ownership.same_step("fersnet train", train0)
    assert ownership.same_step("fersnet preprocess ckplus (taken over: written by an earlier fersnet version)",
                               ownership.step("preprocess", "ckplus"))
    assert not ownership.same_step("fersnet report", train0)
    # a marker that names no step: its folder is replaced only when nothing else is in it
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / ownership.MARKER).write_text('{"made_')
    ownership.check_replaceable(cut, train0)
    ownership.claim_folder(cut, train0)
    assert ownership.maker(cut) == train0
    (cut / ownership.MARKER).write_text("")
    (cut / "metrics.json").write_text("{}")
    with pytest.raises(ownership.ForeignFolder, match="does not say which step made it"):
        ownership.check_replaceable(cut, train0)
