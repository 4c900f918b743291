"""One GPU per job: the slot pool, with a faked device list (no GPU needed)."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

from fersnet import config, gpu_slots, workflow


def _job(slots_dir: str, log: str, hold: float) -> None:
    os.environ[gpu_slots.ENV_SLOTS_DIR] = slots_dir
    slot = gpu_slots.acquire(2, ["0", "1", "2", "3"], poll_s=0.02)
    start = time.monotonic()
    time.sleep(hold)
    end = time.monotonic()
    slot.release()
    with open(log, "a") as f:
        f.write(json.dumps({"device": slot.device, "start": start, "end": end}) + "\n")


def test_twelve_jobs_on_four_devices_two_per_device(tmp_path):
    log = tmp_path / "log.jsonl"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_job, args=(str(tmp_path / "slots"), str(log), 1.5)) for _ in range(12)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    jobs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(jobs) == 12
    events = sorted([(j["start"], 1, j["device"]) for j in jobs] + [(j["end"], -1, j["device"]) for j in jobs],
                    key=lambda e: (e[0], e[1]))
    running = {d: 0 for d in "0123"}
    for _, step, device in events:
        running[device] += step
        assert running[device] <= 2                        # no device over its share
    # none idle while jobs wait: the first eight jobs filled every slot at once, two per device
    first = sorted(jobs, key=lambda j: j["start"])[:8]
    assert sorted(j["device"] for j in first) == ["0", "0", "1", "1", "2", "2", "3", "3"]
    last_first_start = max(j["start"] for j in first)
    first_end = min(j["end"] for j in first)
    assert last_first_start < first_end                    # all eight ran together
    later = sorted(jobs, key=lambda j: j["start"])[8:]
    assert all(j["start"] >= first_end - 0.05 for j in later)   # the rest waited for a free slot


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
