"""One GPU per job: the slot pool, with a faked device list (no GPU needed)."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

from fersnet import config, gpu_slots, workflow


def _job(slots_dir: str, log: str, hold: float, release_dir: str = "", job_id: int = 0) -> None:
    """Take a slot, note it, hold it for `hold` seconds or, with `release_dir`, until the test
    creates `release_dir/<job_id>`; then give it back and note that."""
    os.environ[gpu_slots.ENV_SLOTS_DIR] = slots_dir
    slot = gpu_slots.acquire(2, ["0", "1", "2", "3"], poll_s=0.02)
    _note(log, {"id": job_id, "device": slot.device, "event": "start"})
    if release_dir:
        while not (Path(release_dir) / str(job_id)).exists():
            time.sleep(0.02)
    else:
        time.sleep(hold)
    _note(log, {"id": job_id, "device": slot.device, "event": "end"})
    slot.release()


def _note(log: str, record: dict) -> None:
    with open(log, "a") as f:
        f.write(json.dumps(record) + "\n")


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _wait_for(log: Path, n: int, event: str, timeout_s: float = 120) -> list[dict]:
    """The `event` records once there are at least `n` of them (fails after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [e for e in _events(log) if e["event"] == event]
        if len(found) >= n:
            return found
        assert time.monotonic() < deadline, f"only {len(found)} of {n} jobs reached {event!r}"
        time.sleep(0.05)


def test_twelve_jobs_on_four_devices_two_per_device(tmp_path):
    """Twelve jobs, four devices, two slots each: eight run at once, two per device, and each of
    the other four starts only when a job gives its slot back, on that job's device. The jobs hold
    their slots until the test releases them, so no step depends on how fast processes start."""
    log, release = tmp_path / "log.jsonl", tmp_path / "release"
    release.mkdir()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_job, args=(str(tmp_path / "slots"), str(log), 0, str(release), i))
             for i in range(12)]
    for p in procs:
        p.start()
    try:
        first = _wait_for(log, 8, "start")
        assert sorted(e["device"] for e in first) == ["0", "0", "1", "1", "2", "2", "3", "3"]
        time.sleep(1.0)                                    # the other four keep waiting
        assert len(_wait_for(log, 8, "start")) == 8
        running = {e["id"]: e["device"] for e in first}
        for n_started in range(9, 13):                     # free one slot at a time
            job_id, device = next(iter(running.items()))
            (release / str(job_id)).touch()
            started = _wait_for(log, n_started, "start")
            newcomer = started[-1]
            assert newcomer["device"] == device            # the freed slot, no other
            del running[job_id]
            running[newcomer["id"]] = newcomer["device"]
            assert sorted(running.values()).count(device) <= 2
        for job_id in list(running):
            (release / str(job_id)).touch()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
    finally:
        for i in range(12):
            (release / str(i)).touch()
        for p in procs:
            p.join(5)
    assert len(_wait_for(log, 12, "end")) == 12


def test_a_killed_job_frees_its_slot(tmp_path, monkeypatch):
    monkeypatch.setenv(gpu_slots.ENV_SLOTS_DIR, str(tmp_path))
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_job, args=(str(tmp_path), str(tmp_path / "log"), 30))
    p.start()
    deadline = time.monotonic() + 30
    while gpu_slots._busy(tmp_path, "0", 2) + gpu_slots._busy(tmp_path, "1", 2) + \
            gpu_slots._busy(tmp_path, "2", 2) + gpu_slots._busy(tmp_path, "3", 2) == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    p.kill()
    p.join()
    slot = gpu_slots.acquire(1, ["0"], timeout_s=5)         # the lock went with the process
    assert slot.device == "0"
    slot.release()


def test_devices_come_from_the_environment_without_torch(monkeypatch):
    monkeypatch.setenv(gpu_slots.ENV_DEVICES, "0,1,2")
    assert gpu_slots.devices() == ["0", "1", "2"]
    monkeypatch.delenv(gpu_slots.ENV_DEVICES)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert gpu_slots.devices() == ["3", "5"]


def test_gpu_share_lets_jobs_per_device_times_devices_run():
    for per, n in ((1, 1), (2, 4), (1, 3), (4, 2)):
        share = workflow.gpu_share(per, n)
        assert 100 // share == per * n


def test_the_cli_pins_a_gpu_job_to_one_slot(processed, tmp_path, monkeypatch, capsys):
    import yaml
    from fersnet.cli import main
    cfg = dict(processed)
    cfg["judge"] = dict(cfg["judge"], epochs=1)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(config.params_view(cfg)))
    monkeypatch.setenv(gpu_slots.ENV_DEVICES, "0,1")
    monkeypatch.setenv(gpu_slots.ENV_SLOTS_DIR, str(tmp_path / "slots"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr(gpu_slots, "_held", None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert main(["judge", "--params", str(params), "--db", "ckplus", "--fold", "0"]) == 0
    assert "runs on device 0 of 0,1" in capsys.readouterr().err
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert Path(tmp_path / "slots" / "gpu0.slot0").is_file()
