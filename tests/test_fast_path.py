"""The device-resident path and the straightforward path (PNG files, per-item DataLoader) train identically."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import record  # noqa: E402
import train_step as TS  # noqa: E402
from fersnet.training import batches as B  # noqa: E402


def _grads(task) -> dict:
    return {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("model", ["fersnet", "stargan"])
def test_png_dataloader_and_device_batches_give_same_losses_and_gradients(test_cfg, tmp_path, model):
    torch.set_num_threads(1)
    size, crop, bs = 20, 16, 4
    images, labels, subjects = TS.synthetic_arrays(3, 6, size, 1, 6, seed=0)
    data = B.DeviceData.from_arrays(images, labels, subjects, "cpu")
    pairs = B.PairIndex.build(data, np.arange(len(images)))
    plan = B.make_plan(pairs, data.labels_cpu, 6, size, crop, torch.Generator().manual_seed(3))
    TS.write_pngs(images, tmp_path)
    fast_batches = list(B.DeviceBatcher(data, crop, bs).batches(plan))[:2]
    slow_batches = list(TS.png_batches(tmp_path, plan, crop, 1, bs, "cpu"))[:2]
    fast = TS.build_task(test_cfg, model, 6, 1, "cpu", seed=5, fast=True)
    slow = TS.build_task(test_cfg, model, 6, 1, "cpu", seed=5, fast=False)
    for step, (fb, sb) in enumerate(zip(fast_batches, slow_batches)):
        fb["step"] = sb["step"] = step
        torch.testing.assert_close(fb["x"], sb["x"])
        # in-step randomness (StarGAN's gradient-penalty mix) drawn from the same seed on both paths
        torch.manual_seed(100 + step)
        lf = fast.train_step(fb)
        torch.manual_seed(100 + step)
        ls = slow.train_step(sb)
        assert lf.keys() == ls.keys() and len(lf) > 0
        for k in lf:
            torch.testing.assert_close(torch.as_tensor(lf[k]), torch.as_tensor(ls[k]), msg=k)
        gf, gs = _grads(fast), _grads(slow)
        assert gf and gf.keys() == gs.keys()
        for k in gf:
            torch.testing.assert_close(gf[k], gs[k], msg=k)


def test_train_step_benchmark_reports_both_paths_and_the_compiled_step(tmp_path):
    # the documented command at tiny scale: fast vs straightforward in one run, plus --compile
    out = tmp_path / "ts.json"
    root = Path(__file__).resolve().parents[1]
    result = TS.main(["--params", str(root / "params.yaml"), "--profile", "test", "--models", "stargan",
                      "--warmup", "1", "--repeats", "2", "--compile", "--compile-backend", "aot_eager",
                      "--out", str(out)])
    import json
    doc = json.loads(out.read_text())
    assert record.problems(doc) == [] and doc["numbers"] == json.loads(json.dumps(result))
    r = result["results"][0]
    for key in ("fast_step_s", "straightforward_step_s", "compiled_step_s"):
        assert 0 < r[key] < 30, key                   # a tiny StarGAN step, not a stuck one
    assert r["speedup"] == pytest.approx(r["straightforward_step_s"] / r["fast_step_s"])
    assert r["fast_img_per_s"] == pytest.approx(r["batch_size"] / r["fast_step_s"])
    assert r["compiled_first_step_s"] > r["compiled_step_s"]     # the first step compiles the graphs
    assert result["fast_ops"] == "auto"                 # the params' value unless --fast-ops
    on = TS.main(["--params", str(root / "params.yaml"), "--profile", "test", "--models", "stargan",
                  "--warmup", "1", "--repeats", "1", "--fast-only", "--fast-ops", "yes"])
    row = on["results"][0]
    assert on["fast_ops"] == "yes" and "straightforward_step_s" not in row       # --fast-only: one path
    assert row["fast_img_per_s"] == pytest.approx(row["batch_size"] / row["fast_step_s"])


def test_profile_step_benchmark_splits_a_step_and_names_its_top_operators(tmp_path):
    import json

    import profile_step
    out = tmp_path / "p.json"
    profile_step.main(["--profile", "test", "--models", "fersnet", "judge", "--warmup", "1", "--steps", "2",
                       "--out", str(out)])
    doc = json.loads(out.read_text())
    assert record.problems(doc) == []
    rows = doc["numbers"]["results"]
    assert [r["model"] for r in rows] == ["fersnet", "judge"]
    for r in rows:
        assert abs(sum(r["split_share"].values()) - 1) < 1e-6 and r["split_share"]["backward"] > 0
        assert any("convolution" in o["op"] for o in r["top_ops"])
        # operators' self times are parts of the step: none exceeds it, and they come largest first
        own = [o["self_cpu_ms_per_step"] for o in r["top_ops"]]
        assert own == sorted(own, reverse=True) and 0 < own[0] <= r["step_cpu_ms"]


def test_levers_benchmark_pairs_each_lever_with_the_reference_on_the_same_batches(tmp_path):
    """bench/levers.py: each lever's A and B run the same number of steps and are timed in the same rounds."""
    import json

    import levers
    out = tmp_path / "l.json"
    levers.main(["--profile", "test", "--levers", "foreach_adam", "bf16_cpu", "flush_denormal", "fast_ops",
                 "--lever-models", "stargan", "--rounds", "2", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert record.problems(doc) == []
    rows = {r["lever"]: r for r in doc["numbers"]["results"]}
    assert set(rows) == {"foreach_adam", "bf16_cpu", "flush_denormal", "fast_ops"}
    assert torch.tensor([1e-40]).mul(1.0).item() != 0      # subnormals are back after flush_denormal's blocks
    for r in rows.values():
        assert r["a_cpu_ms"] > 0 and r["b_cpu_ms"] > 0 and r["rounds"] == 2
        assert r["agreement"]["steps"] == 15 and r["agreement"]["same_state_dict_keys"]
        # the reported ratio is the median of the rounds' ratios, so it lies between them
        assert r["ratio_min"] <= r["ratio_b_over_a"] <= r["ratio_max"]
        # the same training on both sides: after 15 steps the losses part by float32 rounding only
        assert 0 <= r["agreement"]["last_step_loss_max_rel_diff"] < 0.1
    # bfloat16 autocast rounds far more coarsely than the exact levers: its weights drift further
    assert rows["bf16_cpu"]["agreement"]["param_max_rel_diff"] > rows["foreach_adam"]["agreement"]["param_max_rel_diff"]


def test_conv_grouping_benchmark_times_the_same_convolutions_grouped_and_separate(tmp_path):
    """bench/conv_grouping.py: the grouped call computes the F separate convolutions (float32
    rounding apart), StarGAN's calls are averaged over its n_critic-step period."""
    import json

    import conv_grouping
    out = tmp_path / "c.json"
    conv_grouping.main(["--profile", "test", "--models", "fersnet", "stargan", "--folds", "3", "--rounds", "1",
                        "--periods", "1", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert record.problems(doc) == []
    rows = {r["model"]: r for r in doc["numbers"]["results"]}
    assert set(rows) == {"fersnet", "stargan"}
    for r in rows.values():
        assert 0 < r["max_abs_diff"] < 1e-4, r["max_abs_diff"]
        assert r["grouped_over_separate"] == pytest.approx(r["grouped_ms"] / r["separate_ms"])
        assert r["whole_step_bound"] == pytest.approx(r["step_ms_folds_times_batch"] / (3 * r["step_ms"]))
        assert r["onednn_ms"] > 0 and r["native_ms"] > 0 and 0 < r["best_backend_per_call_over_onednn"] <= 1
        assert any(not c["transposed"] for c in r["calls"])
    assert any(c["transposed"] for c in rows["stargan"]["calls"])                    # its decoder's up-sampling
    assert rows["stargan"]["conv_calls_per_step"] == len(rows["stargan"]["calls"]) / 5      # n_critic steps
    assert rows["fersnet"]["conv_calls_per_step"] == len(rows["fersnet"]["calls"])


def _git_checkout() -> bool:
    """True when the project is a Git checkout (bench/grid_time.py builds its A side with `git archive`)."""
    try:
        return subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                              capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _git_checkout(), reason="bench/grid_time.py compares against a Git commit; "
                                                  "this copy of the project is not a Git checkout")
def test_grid_time_trains_every_repeat_afresh(tmp_path):
    """bench/grid_time.py at tiny scale against this commit: each A/B repeat is a new training
    process that trains (a finished run of the same inputs would be reused in a fraction of a
    second, without the work the benchmark means to time)."""
    import json

    import grid_time
    out = tmp_path / "g.json"
    grid_time.main(["--ref", "HEAD", "--profile", "test", "--models", "stargan", "--repeats", "2",
                    "--out", str(out)])
    doc = json.loads(out.read_text())
    assert record.problems(doc) == []
    res = doc["numbers"]
    runs = res["runs"]
    assert sorted((r["side"], r["repeat"]) for r in runs) == [("A", 0), ("A", 1), ("B", 0), ("B", 1)]
    for r in runs:
        assert r["epochs"] >= 1 and r["loop_s"] > 0, r
        assert r["cpu_s"] > 1.0, r          # importing torch and training, not reading a finished run
    est = res["grid_estimate"]
    assert est["models_measured"] == ["stargan"]
    ratio = res["per_model"]["stargan"]["cpu_ratio_b_over_a"]
    assert ratio == pytest.approx(res["per_model"]["stargan"]["B"]["cpu_s"] / res["per_model"]["stargan"]["A"]["cpu_s"])
    # only StarGAN's share of the grid's time is scaled, the other models' stays as it was
    today, new = est["today_training_job_s"], est["estimated_training_job_s"]
    assert new["stargan"] == pytest.approx(today["stargan"] * ratio)
    assert all(new[m] == today[m] for m in today if m != "stargan")
