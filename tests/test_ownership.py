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

from fersnet import ownership
from fersnet.errors import FersnetError


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
    folder = ownership.claim_folder(tmp_path / "a" / "b", "fersnet test")
    assert ownership.owned(folder) and ownership.owned(tmp_path / "a")
    assert not ownership.owned(tmp_path)                     # existed before: not fersnet's
    assert '"made_by": "fersnet test"' in (folder / ownership.MARKER).read_text()


def test_created_folders_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        folder = ownership.create_dirs(tmp_path / "x" / "y", "fersnet test")
        tmp = ownership.make_temp_dir(folder, "z", "fersnet test")
    finally:
        os.umask(old)
    for p in (folder, folder.parent, tmp):
        assert stat.S_IMODE(p.stat().st_mode) == 0o755, p


def test_a_folder_with_foreign_files_is_refused_and_named(tmp_path):
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("\\documentclass{book}")
    with pytest.raises(FersnetError, match=r"thesis: holds files fersnet did not create .*pick another --out, or empty it"):
        ownership.check_replaceable(thesis)
    with pytest.raises(FersnetError, match="thesis"):
        ownership.claim_folder(thesis, "fersnet test")
    assert not ownership.owned(thesis)


def test_an_empty_or_marked_folder_is_replaceable(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    ownership.check_replaceable(empty)
    ownership.check_replaceable(tmp_path / "absent")
    marked = ownership.claim_folder(tmp_path / "marked", "fersnet test")
    (marked / "images.npy").write_bytes(b"x")
    ownership.check_replaceable(marked)


def test_swap_in_replaces_a_marked_folder_and_leaves_no_old_copy(tmp_path):
    final = ownership.claim_folder(tmp_path / "out", "fersnet test")
    (final / "old.txt").write_text("old")
    staging = ownership.make_temp_dir(tmp_path, "out", "fersnet test")
    (staging / "new.txt").write_text("new")
    ownership.swap_in(staging, final)
    assert sorted(p.name for p in final.iterdir()) == [ownership.MARKER, "new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_swap_in_refuses_a_foreign_folder_and_changes_nothing(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "thesis.tex").write_text("mine")
    staging = ownership.make_temp_dir(tmp_path, "out", "fersnet test")
    with pytest.raises(FersnetError, match="out: holds files"):
        ownership.swap_in(staging, final)
    assert (final / "thesis.tex").read_text() == "mine"


def test_swap_in_without_an_atomic_exchange_also_keeps_the_old_folder_until_the_new_one_is_in(tmp_path, monkeypatch):
    monkeypatch.setattr(ownership, "_exchange", lambda a, b: False)
    final = ownership.claim_folder(tmp_path / "out", "fersnet test")
    (final / "v").write_text("1")
    staging = ownership.make_temp_dir(tmp_path, "out", "fersnet test")
    (staging / "v").write_text("2")
    ownership.swap_in(staging, final)
    assert (final / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_clean_temps_removes_dead_processes_leftovers_whatever_their_pid(tmp_path):
    run = ownership.claim_folder(tmp_path / "results" / "fold0", "fersnet test")
    pid = dead_pid()
    names = [leftover_name("checkpoint.pt", "tmp", pid), f".checkpoint.pt.tmp{pid}", f".history.csv.tmp-{pid}"]
    for n in names:
        (run / n).write_bytes(b"partial")
    staging = run.parent / leftover_name("fold1", "tmp", pid)
    staging.mkdir()
    ownership.mark(staging, "fersnet test")
    (staging / "images.npy").write_bytes(b"partial")
    removed = ownership.clean_temps(tmp_path / "results")
    assert sorted(p.name for p in removed) == sorted(names + [staging.name])
    assert sorted(p.name for p in run.iterdir()) == [ownership.MARKER]
    assert sorted(p.name for p in run.parent.iterdir()) == [ownership.MARKER, "fold0"]


def test_clean_temps_keeps_a_running_jobs_temporaries(tmp_path):
    run = ownership.claim_folder(tmp_path / "fold0", "fersnet test")
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
    parent = ownership.claim_folder(tmp_path / "processed", "fersnet test")
    old = parent / leftover_name("ckplus", "old", dead_pid())
    old.mkdir()
    ownership.mark(old, "fersnet test")
    (old / "images.npy").write_text("complete")
    ownership.clean_temps(parent / "ckplus")
    assert (parent / "ckplus" / "images.npy").read_text() == "complete"
    assert sorted(p.name for p in parent.iterdir()) == [ownership.MARKER, "ckplus"]
