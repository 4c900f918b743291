#!/usr/bin/env bash
# GPU check for a CUDA machine (written for one H100, < 8 min). Writes everything to $OUT (default bench/results/gpu);
# the short fold of step 3 runs in a project folder of its own under $OUT, so the project's data and results are untouched.
# Python: .venv if it exists; else system python if torch imports; else a venv from requirements.lock.
# To try the script itself on any machine first (about a minute; the numbers mean nothing there):
#   DEVICE=cpu PROFILE=test QUICK=1 OUT=/tmp/gpu_check bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results/gpu}"
DEVICE="${DEVICE:-cuda}"          # the device under test
PROFILE="${PROFILE:-paper}"       # params.yaml profile of the steps and the fold
# warm-up / timed steps, and the models of step 2 (QUICK: the script's own check, one model)
if [ "${QUICK:-0}" = 1 ]; then W=1; R=1; RC=1; NC=2; MODELS="fersnet"; else W=3; R=10; RC=30; NC=4; MODELS="fersnet no_mtl no_convflu fes_da stargan"; fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export OUT DEVICE PROFILE NC
if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
  PY=.venv/bin/python
elif python3 -c "import torch, cv2, yaml" 2>/dev/null; then
  PY=python3
else
  python3 -m venv /tmp/fersnet-venv && /tmp/fersnet-venv/bin/pip install -q -r requirements.lock
  PY=/tmp/fersnet-venv/bin/python
fi
echo "python: $PY" | tee "$OUT/log.txt"
nvidia-smi 2>&1 | head -15 | tee -a "$OUT/log.txt"
$PY - <<'PY' 2>&1 | tee -a "$OUT/log.txt"
import torch, platform
print("torch", torch.__version__, "cuda", torch.version.cuda, "python", platform.python_version())
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA")
PY
# 1. one step's losses on CPU vs GPU (bf16 tolerance), same seed and batch
timeout 90 $PY - <<'PY' 2>&1 | tee -a "$OUT/log.txt"
import json, sys, numpy as np, torch, os
sys.path.insert(0, "bench"); import train_step as TS
from fersnet import config
from fersnet.training import batches as B
cfg = config.load("params.yaml", os.environ["PROFILE"])
dev_under_test = os.environ["DEVICE"]
size, crop, bs = cfg["preprocess"]["size"], cfg["train"]["crop"], cfg["train"]["batch_size"]
images, labels, subjects = TS.synthetic_arrays(4, 6, size, 1, 6, seed=0)
out = {}
for dev in ("cpu", dev_under_test):
    data = B.DeviceData.from_arrays(images, labels, subjects, dev)
    plan = B.make_plan(B.PairIndex.build(data, np.arange(len(images))), data.labels_cpu, 6, size, crop,
                       torch.Generator().manual_seed(1))
    batch = next(B.DeviceBatcher(data, crop, bs).batches(plan)); batch["step"] = 0
    task = TS.build_task(cfg, "fersnet", 6, 1, dev, seed=0, fast=True)
    torch.manual_seed(7)
    out[dev] = {k: float(v) for k, v in task.train_step(batch).items()}
bad = {k: (out["cpu"][k], out[dev_under_test][k]) for k in out["cpu"]
       if abs(out["cpu"][k] - out[dev_under_test][k]) > 0.05 * max(1.0, abs(out["cpu"][k]))}
print("cpu_vs_gpu_losses", "OK" if not bad else f"MISMATCH {bad}")
json.dump({"device": dev_under_test, "losses": out, "mismatch": bad}, open(os.environ["OUT"] + "/cpu_vs_gpu.json", "w"), indent=2)
PY
# 2. train-step throughput, every model, paper profile, fast vs straightforward (workers 4)
timeout 240 $PY bench/train_step.py --profile "$PROFILE" --device "$DEVICE" --models $MODELS --warmup $W --repeats $R --workers 4 \
  --subjects 8 --threads 4 --out "$OUT/train_step_paper_h100.json" 2>&1 | tee -a "$OUT/log.txt"
# 2b. concurrent folds: 4 processes (QUICK: 2) of the fast fersnet step on the one GPU at once; the sum of
#     their img/s against one process is what `orchestration.gpu_jobs_per_device: 4` would buy
for i in $(seq 1 $NC); do
  timeout 150 $PY bench/train_step.py --profile "$PROFILE" --device "$DEVICE" --models fersnet --fast-only \
    --warmup $W --repeats $RC --subjects 8 --threads 2 --seed $i --out "$OUT/concurrent_$i.json" > "$OUT/concurrent_$i.log" 2>&1 &
done
wait
$PY - <<'PY' 2>&1 | tee -a "$OUT/log.txt"
import json, os
out = os.environ["OUT"]
rows = [json.load(open(f"{out}/concurrent_{i}.json"))["numbers"]["results"][0] for i in range(1, int(os.environ["NC"]) + 1) if os.path.exists(f"{out}/concurrent_{i}.json")]
if len(rows) < int(os.environ["NC"]):
    print(f"concurrent fersnet: only {len(rows)} of {os.environ['NC']} processes finished (see {out}/concurrent_*.log)")
total = sum(r["fast_img_per_s"] for r in rows)
frac = sum(r.get("peak_fraction") or 0 for r in rows)
print(f"concurrent fersnet x{len(rows)}: {total:.1f} img/s in all, {frac:.1%} of the bf16 peak together")
PY
# 2c. torch.compile (train.compile: yes, inductor) on the fast fersnet step: first step (compilation) and median after
#     (on a CPU a cold inductor compile takes minutes: left out there)
if [ "$DEVICE" = cpu ]; then
  echo "compile: left out on the CPU (docs/performance.md, torch.compile)" | tee -a "$OUT/log.txt"
else
  timeout 180 $PY bench/train_step.py --profile "$PROFILE" --device "$DEVICE" --models fersnet --fast-only --compile \
    --warmup $W --repeats $R --subjects 8 --threads 4 --out "$OUT/train_step_paper_compiled.json" 2>&1 | tee -a "$OUT/log.txt"
fi
# 2d. train.fast_ops off against on (auto = on with CUDA): the fast fersnet and stargan steps, one run each
#     (one after the other; QUICK: at once, its timings mean nothing anyway)
for f in yes no; do
  timeout 120 $PY bench/train_step.py --profile "$PROFILE" --device "$DEVICE" --models fersnet stargan --fast-only --fast-ops $f \
    --warmup $W --repeats $R --subjects 8 --threads 4 --out "$OUT/train_step_paper_fast_ops_$f.json" > "$OUT/fast_ops_$f.log" 2>&1 &
  [ "${QUICK:-0}" = 1 ] || wait
done
wait
$PY - <<'PY' 2>&1 | tee -a "$OUT/log.txt"
import json, os
out = os.environ["OUT"]
try:
    on, off = ({r["model"]: r["fast_img_per_s"] for r in json.load(open(f"{out}/train_step_paper_fast_ops_{f}.json"))["numbers"]["results"]}
               for f in ("yes", "no"))
    print("fast_ops on/off img/s:", {m: round(on[m] / off[m], 3) for m in on})
except (OSError, KeyError, ValueError) as e:
    print("fast_ops comparison: not measured", e)
PY
# 3. one short fold (2 epochs) on the CK+ stand-in, in a project folder of its own under $OUT: a params copy
#    whose stand-in, processed data, results and reports all lie there (the project's own are not touched)
$PY - <<'PY'
import os, yaml
out, prof = os.environ["OUT"], os.environ["PROFILE"]
p = yaml.safe_load(open("params.yaml"))
p["profile"] = prof
prof_block = p["profiles"].setdefault(prof, {})
prof_block.setdefault("train", {}).update(epochs=2, min_steps=None)
here = f"{out}/fold_project"           # in the profile's block, so that no value of the profile's own points elsewhere
prof_block.setdefault("synth", {})["out"] = f"{here}/data/synthetic"
prof_block.setdefault("data", {}).setdefault("ckplus", {})["root"] = f"{here}/data/synthetic/ckplus"
prof_block.setdefault("preprocess", {})["out"] = f"{here}/data/processed"
prof_block["paths"] = {"results": f"{here}/results", "reports": f"{here}/reports"}
open(f"{out}/params_gpu_check.yaml", "w").write(yaml.safe_dump(p, sort_keys=False))
PY
echo "short fold: see $OUT/fold.txt"
P="--params $OUT/params_gpu_check.yaml --profile $PROFILE"
( time { timeout 200 $PY -m fersnet.cli synth $P --db ckplus && \
         timeout 200 $PY -m fersnet.cli preprocess $P --db ckplus && \
         timeout 150 $PY -m fersnet.cli train $P --db ckplus --model fersnet --fold 0 --device "$DEVICE"; } ) \
  > "$OUT/fold.txt" 2>&1
tail -5 "$OUT/fold.txt" | tee -a "$OUT/log.txt"
echo "done"
