# Helpers shared by every rule: the resolved config, target lists built from fersnet.paths,
# the CLI command line and the GPU resource of a job (docs/orchestration.md).
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

# The project root (where the Snakefile lives) first on the path, so that the rules use this
# checkout's fersnet even when the package is not installed into the running Python.
sys.path.insert(0, str(Path(workflow.basedir)))

from fersnet import config as fconfig  # noqa: E402
from fersnet import paths  # noqa: E402
from fersnet.tracking import markers  # noqa: E402

PARAMS_FILE = "params.yaml"


def resolve_config(raw):
    """Validate Snakemake's config (params.yaml plus --config) with the project's schema."""
    try:
        return fconfig.resolve(dict(raw), source=PARAMS_FILE)
    except fconfig.ConfigError as e:
        raise WorkflowError(f"fersnet: {e}") from None


def effective_params(raw):
    """The params file the CLI jobs read: params.yaml itself, or a copy carrying --config overrides.

    The profile travels as --profile; any other --config override (e.g. n_folds=2) is written to
    .snakemake/fersnet/params-<hash>.yaml so that the jobs see exactly what Snakemake planned with.
    """
    on_disk = yaml.safe_load(Path(PARAMS_FILE).read_text()) if Path(PARAMS_FILE).is_file() else {}
    mine = {k: v for k, v in raw.items() if k != "profile"}
    theirs = {k: v for k, v in (on_disk or {}).items() if k != "profile"}
    if mine == theirs:
        return PARAMS_FILE
    text = yaml.safe_dump(dict(raw), sort_keys=True)
    out = Path(".snakemake") / "fersnet" / f"params-{hashlib.sha1(text.encode()).hexdigest()[:12]}.yaml"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(out)
    return str(out)


CFG = resolve_config(config)
PROFILE = CFG["profile"]
PARAMS = effective_params(config)
DATABASES = list(CFG["databases"])
MODELS = list(CFG["models"])
FOLDS = list(range(CFG["n_folds"]))
# Models whose generator is scored (fes_da shares fersnet's generator; fersnet/cli.py `score`).
SCORED = [m for m in MODELS if m in ("fersnet", "no_mtl", "no_convflu", "stargan")]
TRACKED_MODELS = MODELS + ["judge"]

# Jobs call the `fersnet` CLI installed next to the Python running Snakemake (the project's venv),
# found through PATH so that the interpreter's location is not a rerun-triggering rule param.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
COMMON_ARGS = f"--params {PARAMS} --profile {PROFILE}"


def has_gpu():
    """Whether this machine has an NVIDIA GPU, without importing torch (seconds per Snakemake start)."""
    return shutil.which("nvidia-smi") is not None


USES_GPU = CFG["train"]["device"] in ("cuda", "mps") or (CFG["train"]["device"] == "auto" and has_gpu())
# `gpu_share`: one device = 100; the default profile limits it to 100, so at most
# orchestration.gpu_jobs_per_device heavy jobs share the GPU. Snakemake resources are integers,
# hence a percentage rather than a fraction of `gpu`. CPU-only runs take no share at all.
GPU_SHARE = 100 // CFG["orchestration"]["gpu_jobs_per_device"] if USES_GPU else 0
GPU_COUNT = 1 if USES_GPU else 0      # the standard `gpu` resource, read by cluster executors
TRAIN_THREADS = CFG["train"]["threads"]
# orchestration.batch_folds: one process per (db, model) step runs all its folds
BATCH_FOLDS = CFG["orchestration"]["batch_folds"]
RUN_FOLDS = os.path.relpath(Path(workflow.basedir) / "workflow" / "scripts" / "run_folds.py")
INIT_MARKER = str(markers.init_marker(CFG))
FOLDS_MANIFEST = str(markers.manifest(CFG, "folds"))
SCORES_MANIFEST = str(markers.manifest(CFG, "scores"))


def synth_folder(db):
    return str(paths.synth_dir(CFG, db))


def processed_files(db):
    folder = paths.processed_dir(CFG, db)
    return [str(folder / paths.IMAGES), str(folder / paths.META), str(folder / paths.PREP_SUMMARY)]


def raw_input(wildcards):
    """preprocess reads the database root: the stand-in made by `synth`, or a user's licensed copy."""
    root = paths.raw_dir(CFG, wildcards.db)
    if root.resolve() == paths.synth_dir(CFG, wildcards.db).resolve():
        return str(root)
    if not root.exists():
        raise WorkflowError(f"fersnet: data.{wildcards.db}.root = {root} does not exist")
    return ancient(str(root))


def run_folder(db, model, fold):
    """paths.run_dir for a concrete fold, or a Snakemake pattern when fold is "{fold}".

    paths.run_dir casts the fold to int, so the pattern swaps the last component of a concrete
    run folder (results/<db>/<model>/fold<k>) for the wildcard.
    """
    if str(fold).isdigit():
        return paths.run_dir(CFG, db, model, int(fold))
    concrete = paths.run_dir(CFG, db, model, 0)
    return concrete.parent / concrete.name.replace("0", str(fold))


def run_done(db, model, fold):
    return str(run_folder(db, model, fold) / paths.DONE)


def judge_done(db, fold):
    # paths.judge_dir(cfg, db, k) is run_dir(cfg, db, "judge", k)
    return str(run_folder(db, "judge", fold) / paths.DONE)


def scores_file(db, model, fold):
    # paths.synthesis_dir(cfg, db, model, k) is run_dir(...) / "synthesis"
    synthesis = paths.synthesis_dir(CFG, db, model, 0).relative_to(paths.run_dir(CFG, db, model, 0))
    return str(run_folder(db, model, fold) / synthesis / paths.SCORES)


def pooled_file(db, model):
    # fersnet.metrics.score.pooled_path, without importing the scoring stack (torch) here
    return str(Path(CFG["paths"]["results"]) / db / model / "synthesis_pooled.json")


def train_inputs(wildcards):
    """A training job needs its processed database; fes_da fine-tunes the same fold's fersnet."""
    inputs = processed_files(wildcards.db)
    if wildcards.model == "fes_da":
        inputs.append(run_done(wildcards.db, "fersnet", wildcards.fold))
    return inputs


def synth_params(wildcards):
    """Settings the stand-in depends on (Snakemake reruns `synth` when they change)."""
    return json.dumps({"seed": CFG["seed"], "synth": CFG["synth"]}, sort_keys=True)


def preprocess_params(wildcards):
    return json.dumps({"n_folds": CFG["n_folds"], "preprocess": CFG["preprocess"],
                       "data": CFG["data"][wildcards.db]}, sort_keys=True)


def train_batch_inputs(wildcards):
    """All folds of a (db, model) in one job; fes_da waits for every fersnet fold of the database."""
    inputs = processed_files(wildcards.db)
    if wildcards.model == "fes_da":
        inputs += [run_done(wildcards.db, "fersnet", k) for k in FOLDS]
    return inputs


def model_params(wildcards):
    """The params a training job depends on, as stable JSON: Snakemake reruns it when they change."""
    keys = ["seed", "n_folds", "preprocess", "model", "train"]
    keys += {"fes_da": ["fes_da"], "stargan": ["stargan"], "judge": ["judge"]}.get(wildcards.model, [])
    return json.dumps({k: CFG[k] for k in keys}, sort_keys=True)


def judge_params(wildcards):
    return json.dumps({k: CFG[k] for k in ("seed", "n_folds", "preprocess", "judge", "train")}, sort_keys=True)


def score_params(wildcards):
    return json.dumps({k: CFG[k] for k in ("seed", "fid", "train")}, sort_keys=True)


def training_targets(dbs=None):
    dbs = DATABASES if dbs is None else dbs
    runs = [run_done(db, m, k) for db in dbs for m in MODELS for k in FOLDS]
    return runs + [judge_done(db, k) for db in dbs for k in FOLDS]


def score_targets(dbs=None):
    dbs = DATABASES if dbs is None else dbs
    scores = [scores_file(db, m, k) for db in dbs for m in SCORED for k in FOLDS]
    return scores + [pooled_file(db, m) for db in dbs for m in SCORED]


def pool_inputs(wildcards):
    return [scores_file(wildcards.db, m, k) for m in SCORED for k in FOLDS]


def parent_targets(dbs=None):
    dbs = DATABASES if dbs is None else dbs
    return [str(markers.parent_marker(CFG, db, m)) for db in dbs for m in TRACKED_MODELS]


def report_targets():
    return [str(paths.reports_dir(CFG) / "summary.json")]


def fold_outputs(wildcards):
    """What the (db, model) parent run summarises: every fold's result, and its scores if scored."""
    db, model = wildcards.db, wildcards.tracked
    if model == "judge":
        return [judge_done(db, k) for k in FOLDS]
    files = [run_done(db, model, k) for k in FOLDS]
    if model in SCORED:
        files += [scores_file(db, model, k) for k in FOLDS]
    return files


# Settings that do not change a training result (fersnet.training.train.fingerprint ignores them).
RUNTIME_ONLY = {"train": ("device", "threads", "checkpoint_every")}


def _result_settings(cfg, model):
    keys = json.loads(model_params(type("W", (), {"model": model})()))
    return {k: ({kk: vv for kk, vv in v.items() if kk not in RUNTIME_ONLY.get(k, ())}
                if isinstance(v, dict) else v) for k, v in keys.items()}


def clear_stale_checkpoint(db, model, fold):
    """Before Snakemake reruns a training job whose params changed, drop the old checkpoint.

    The trainer resumes from checkpoint.pt after a crash but refuses one made with other settings;
    a rerun decided by the workflow (params trigger) must start over. The previous settings are
    read from the run's config.json (the resolved config of that run, docs/architecture.md).
    """
    folder = run_folder(db, model, fold)
    stale, previous = folder / paths.CHECKPOINT, folder / paths.CONFIG
    if not (stale.is_file() and previous.is_file()):
        return
    try:
        old = json.loads(previous.read_text())
    except (OSError, json.JSONDecodeError):
        return
    current = _result_settings(CFG, model)
    before = {k: ({kk: vv for kk, vv in old.get(k, {}).items() if kk not in RUNTIME_ONLY.get(k, ())}
                  if isinstance(old.get(k), dict) else old.get(k)) for k in current}
    if before != current:
        stale.unlink()


def write_manifest(inputs, output):
    """A stamp for DVC: one line per input with its size and content hash (mtime-free)."""
    lines = []
    for f in sorted(map(str, inputs)):
        data = Path(f).read_bytes()
        lines.append(f"{hashlib.sha1(data).hexdigest()}  {len(data):>10}  {f}")
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)
