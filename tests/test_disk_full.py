"""A full disk (ENOSPC) while a job writes: one line naming the folder, nothing half-written kept,
and the same command completes once space is freed.

The disk is a real, small tmpfs mounted for the test (needs root and a kernel that allows the
mount; skipped with the reason otherwise). The jobs are the real CLI verbs at the test profile.
"""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, write_processed
from fersnet import cli, ownership, paths
from fersnet.errors import DiskFull, writing
from native_trees import make_ckplus


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs at tmp_path/disk, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount a tmpfs to fill ({e})")
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs to fill: {done.stderr.strip() or done.returncode} "
                    "(needs root and a system that allows mounts)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill `disk` until at most `leave` bytes are free; the filler file is returned (delete it to free)."""
    filler = disk / "filler.bin"
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
        if not leave:
            try:                                  # whatever tmpfs still takes, to the last page
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC
    return filler


def params_file(cfg: dict, path: Path) -> Path:
    """A params.yaml whose test profile writes where `cfg` says (the CLI reads a params file)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["synth"]["out"] = cfg["synth"]["out"]
    raw["preprocess"]["out"] = cfg["preprocess"]["out"]
    raw["paths"] = dict(cfg["paths"])
    raw["mlflow"] = dict(cfg["mlflow"])
    path.write_text(yaml.safe_dump(raw))
    return path


def errors_of(err: str, verb: str) -> list[str]:
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith(f"fersnet {verb}: error:")]


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders of fersnet's writers (ownership.temp_name) anywhere under folder."""
    return [str(p) for p in folder.rglob("*") if ownership._parse(p.name) is not None]


def test_writing_names_the_outermost_folder_and_lets_other_errors_through(tmp_path):
    with pytest.raises(DiskFull, match=f"^{tmp_path / 'run'}: the disk is full \\(No space left on device\\); "
                                       "nothing half-written was kept"):
        with writing(tmp_path / "run"):
            with writing(tmp_path / "run" / ".staging"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(PermissionError):
        with writing(tmp_path):
            raise PermissionError(errno.EACCES, "Permission denied")


def test_judge_on_a_full_disk_is_one_line_and_completes_once_space_is_freed(test_cfg, tmp_path, small_disk, capsys):
    write_processed(Path(test_cfg["preprocess"]["out"]) / "ckplus", size=test_cfg["preprocess"]["size"])
    test_cfg["paths"]["results"] = str(small_disk / "results")
    params = params_file(test_cfg, tmp_path / "params.yaml")
    argv = ["judge", "--params", str(params), "--profile", "test", "--db", "ckplus", "--fold", "0"]
    out = paths.judge_dir(test_cfg, "ckplus", 0)
    filler = fill(small_disk, leave=64 * 1024)      # room for the small files, not the checkpoint
    assert cli.main(argv) == 2
    (line,) = errors_of(capsys.readouterr().err, "judge")
    assert f"{out}: the disk is full" in line and "free some space" in line
    assert not (out / paths.METRICS).exists() and not leftovers(small_disk)
    filler.unlink()
    assert cli.main(argv) == 0
    assert (out / paths.METRICS).is_file() and (out / paths.CHECKPOINT).is_file() and not leftovers(small_disk)


def test_training_checkpoint_on_a_full_disk_is_one_line_and_the_rerun_completes(test_cfg, tmp_path, small_disk,
                                                                                capsys):
    write_processed(Path(test_cfg["preprocess"]["out"]) / "ckplus", size=test_cfg["preprocess"]["size"])
    test_cfg["paths"]["results"] = str(small_disk / "results")
    params = params_file(test_cfg, tmp_path / "params.yaml")
    argv = ["train", "--params", str(params), "--profile", "test", "--db", "ckplus", "--model", "stargan",
            "--fold", "0"]
    run = paths.run_dir(test_cfg, "ckplus", "stargan", 0)
    filler = fill(small_disk, leave=64 * 1024)      # room for the run's small files, not its checkpoint
    assert cli.main(argv) == 2
    (line,) = errors_of(capsys.readouterr().err, "train")
    assert f"{run}: the disk is full" in line
    assert not (run / paths.METRICS).exists() and not (run / paths.CHECKPOINT).exists()
    assert not leftovers(small_disk)
    filler.unlink()
    assert cli.main(argv) == 0
    assert (run / paths.METRICS).is_file() and (run / paths.CHECKPOINT).is_file() and not leftovers(small_disk)


def test_preprocess_on_a_full_disk_is_one_line_keeps_nothing_and_completes_once_space_is_freed(
        test_cfg, tmp_path, small_disk, capsys):
    root = make_ckplus(tmp_path / "raw" / "ck", {("S005", "001"): 3, ("S010", "001"): 5, ("S011", "002"): 7})
    test_cfg["preprocess"]["out"] = str(small_disk / "processed")
    params = params_file(test_cfg, tmp_path / "params.yaml")
    out = small_disk / "processed" / "ckplus"
    argv = ["preprocess", "--params", str(params), "--profile", "test", "--db", "ckplus", "--root", str(root)]
    filler = fill(small_disk, leave=8 * 1024)
    assert cli.main(argv) == 2
    (line,) = errors_of(capsys.readouterr().err, "preprocess")
    assert f"{out}: the disk is full" in line
    assert not out.exists() and not leftovers(small_disk)
    filler.unlink()
    assert cli.main(argv) == 0
    assert (out / paths.IMAGES).is_file() and (out / paths.PREP_REPORT).is_file()


def test_a_short_write_without_an_errno_is_a_full_disk_too(tmp_path):
    """numpy's tofile on a full disk raises OSError('5184 requested and 3968 written') with no errno."""
    from fersnet.errors import DiskFull, disk_full, writing
    assert disk_full(OSError("5184 requested and 3968 written"))
    assert not disk_full(OSError("something else")) and not disk_full(ValueError("5 requested and 3 written"))
    with pytest.raises(DiskFull, match=str(tmp_path)):
        with writing(tmp_path):
            raise OSError("5184 requested and 3968 written")


def test_the_safe_writes_on_a_full_disk_name_the_folder_and_keep_the_old_output(small_disk):
    folder = ownership.claim_folder(small_disk / "run", ownership.step("train", "ckplus", "fersnet", "seed0", "fold0"))
    target = folder / paths.CHECKPOINT
    target.write_bytes(b"the previous checkpoint")
    (folder / paths.METRICS).write_text("{}")
    filler = fill(small_disk, leave=64 * 1024)
    with pytest.raises(DiskFull, match=f"^{folder}: the disk is full"):
        ownership.write_bytes(target, b"x" * (1 << 20))
    with pytest.raises(DiskFull, match=f"^{folder}: the disk is full"):
        with ownership.build_aside(folder, ownership.maker(folder)) as staging:
            (staging / paths.CHECKPOINT).write_bytes(b"x" * (1 << 20))
    assert target.read_bytes() == b"the previous checkpoint" and (folder / paths.METRICS).read_text() == "{}"
    assert not leftovers(small_disk)
    filler.unlink()
    ownership.write_bytes(target, b"x" * (1 << 20))
    assert target.stat().st_size == 1 << 20 and not leftovers(small_disk)


def test_a_tracking_failure_record_on_a_full_disk_is_a_warning_not_an_error(test_cfg, small_disk, capsys):
    from fersnet.tracking.folds import record_failure
    test_cfg["paths"]["results"] = str(small_disk / "results")
    ownership.create_dirs(small_disk / "results", ownership.step("track"))
    fill(small_disk, leave=1024)
    assert record_failure(test_cfg, "ckplus", "fersnet", 0, "log", RuntimeError("store locked")) is None
    assert "could not record the MLflow failure" in capsys.readouterr().err and not leftovers(small_disk)
