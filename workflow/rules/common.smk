# Helpers shared by every rule: the resolved config, target lists built from fersnet.paths,
# the CLI command line and the GPU resource of a job (docs/orchestration.md). Decisions live in
# fersnet/workflow.py (tested); this file only adapts them to Snakemake.
import os
import shlex
import shutil
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The project root (above workflow/, where the Snakefile lives) first on the path, so that the
# rules use this checkout's fersnet even when the package is not installed into the running Python.
sys.path.insert(0, str(Path(workflow.basedir).parent))

from fersnet import catalog  # noqa: E402
from fersnet import config as fconfig  # noqa: E402
from fersnet import device as fdevice  # noqa: E402
from fersnet import paths  # noqa: E402
from fersnet import workflow as fwork  # noqa: E402
from fersnet.models import registry  # noqa: E402
from fersnet.reports import contents as report_contents  # noqa: E402

PARAMS_FILE = "params.yaml"


def resolve_config(raw):
    """params.yaml, read as plain data by the project's strict loader (fersnet.config.read_params:
    no templating, no tags, no duplicate keys), under Snakemake's command-line config `raw` and the
    --config values read as YAML (typed list items, fersnet.workflow.command_line_config); validated
    with the project's schema. Returns (the merged raw config, the resolved config)."""
    try:
        params = fconfig.read_params(PARAMS_FILE)
        settings = getattr(workflow, "config_settings", None)
        given = fwork.command_line_config(getattr(settings, "config_args", None))
        merged = fconfig.deep_merge(fconfig.deep_merge(params, dict(raw)), given)
        return merged, fconfig.resolve(merged, source=PARAMS_FILE)
    except fconfig.ConfigError as e:
        raise WorkflowError(f"fersnet: {e}") from None


_RAW, CFG = resolve_config(config)
config.update(_RAW)              # Snakemake's `config`: params.yaml under the command line, as before
try:  # external models are built and tried once now: a broken one stops the run before any job
    registry.check_plugins(CFG)
except fconfig.ConfigError as e:
    raise WorkflowError(f"fersnet: {e}") from None
PROFILE = CFG["profile"]
# The params of this run, resolved once now: every job reads this snapshot, so an edit of
# params.yaml during the run reaches none of its jobs (checked again at the end, Snakefile).
PARAMS = fwork.snapshot(CFG)
PARAMS_DIGEST_AT_START = fwork.file_digest(PARAMS_FILE)
DATABASES = list(CFG["databases"])
MODELS = list(CFG["models"])
FOLDS = list(range(CFG["n_folds"]))
SEEDS = list(CFG["run_seeds"])
# Models whose generator is scored (fes_da and fes_da_real share fersnet's generator; fersnet/cli.py `score`).
SCORED = [m for m in MODELS if m in catalog.generators()]
TRACKED_MODELS = catalog.tracked_models(MODELS)

# Jobs call the `fersnet` CLI installed next to the Python running Snakemake (the project's venv),
# found through PATH so that the interpreter's location is not a rerun-triggering rule param.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
# Used as {COMMON_ARGS} in shell commands, not passed as params: the snapshot's name changes
# with every params edit, and as a param it would re-run every job (docs/orchestration.md).
COMMON_ARGS = f"--params {PARAMS}"


# GPUs are found without importing torch (seconds per Snakemake start): CUDA_VISIBLE_DEVICES or
# `nvidia-smi -L`. Each job takes a slot on one device itself (fersnet/gpu_slots.py).
GPU_DEVICES = fdevice.workflow_gpus(CFG["train"]["device"])
USES_GPU = fdevice.uses_gpu(CFG["train"]["device"], GPU_DEVICES)
# `gpu_share`: all devices together = 100 (the default profile's limit), so at most
# orchestration.gpu_jobs_per_device jobs per device run at once. CPU-only runs take no share.
GPU_SHARE = fwork.gpu_share(CFG["orchestration"]["gpu_jobs_per_device"], max(1, len(GPU_DEVICES))) if USES_GPU else 0
GPU_COUNT = 1 if USES_GPU else 0      # the standard `gpu` resource, read by cluster executors
TRAIN_THREADS = CFG["train"]["threads"]
# orchestration.folds_per_job: the folds of a (db, model) step, grouped into jobs
FOLD_GROUPS = fwork.fold_groups(CFG)


def share_step_resources(steps=("train", "judge", "score")):
    """Profiles set resources per step (`set-resources: train: ...`, workflow/profiles/slurm); the
    steps' rules are named per fold group (train_fold0, train_folds0_9), so the step's settings
    are copied to each of them before the rules are defined (a group's own entry wins)."""
    settings = getattr(workflow, "resource_settings", None)
    parsed = getattr(settings, "_parsed_overwrite_resources", None)
    if not isinstance(parsed, dict):
        return
    for step in steps:
        if step in parsed:
            for group in FOLD_GROUPS:
                parsed.setdefault(f"{step}_{fwork.group_tag(group)}", parsed[step])


share_step_resources()
MLFLOW_INIT_RECORD = str(paths.mlflow_init_record(CFG))
FOLDS_MANIFEST = str(paths.stage_manifest(CFG, "folds"))
SCORES_MANIFEST = str(paths.stage_manifest(CFG, "scores"))


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


def run_folder(db, model, fold, seed="{seed}"):
    """paths.run_dir for a concrete fold and seed, or a Snakemake pattern when either is a
    wildcard ("{fold}", "{seed}"): paths.run_dir casts both to int, so the pattern is a concrete
    run folder (results/<db>/<model>/seed<s>/fold<k>) with those components swapped back."""
    concrete = paths.run_dir(CFG, db, model, int(fold) if str(fold).isdigit() else 0,
                             int(seed) if str(seed).isdigit() else 0)
    seed_part = concrete.parent.name if str(seed).isdigit() else f"seed{seed}"
    fold_part = concrete.name if str(fold).isdigit() else f"fold{fold}"
    return concrete.parent.parent / seed_part / fold_part


def run_done(db, model, fold, seed="{seed}"):
    return str(run_folder(db, model, fold, seed) / paths.DONE)


def judge_done(db, fold, seed="{seed}"):
    # paths.judge_dir(cfg, db, k, s) is run_dir(cfg, db, "judge", k, s)
    return str(run_folder(db, "judge", fold, seed) / paths.DONE)


def scores_file(db, model, fold, seed="{seed}"):
    # paths.synthesis_dir(cfg, db, model, k, s) is run_dir(...) / "synthesis"
    synthesis = paths.synthesis_dir(CFG, db, model, 0, 0).relative_to(paths.run_dir(CFG, db, model, 0, 0))
    return str(run_folder(db, model, fold, seed) / synthesis / paths.SCORES)


def pooled_file(db, model, seed="{seed}"):
    # paths.pooled_file: <seed folder>/synthesis_pooled.json
    name = paths.pooled_file(CFG, db, model, 0).name
    return str(run_folder(db, model, 0, seed).parent / name)


def train_inputs(wildcards, group):
    """A training job needs its processed database; fes_da and its control fes_da_real fine-tune
    the same folds' (and seed's) fersnet."""
    inputs = processed_files(wildcards.db)
    for needed in fwork.train_needs(wildcards.model):
        inputs += [run_done(wildcards.db, needed, k, wildcards.seed) for k in group]
    return inputs


def group_train_inputs(group):
    """train_inputs for one fold group, as the input function of that group's rule."""
    return lambda wildcards: train_inputs(wildcards, group)


def synth_params(wildcards):
    return fwork.synth_params(CFG)


def preprocess_params(wildcards):
    return fwork.preprocess_params(CFG, wildcards.db)


def job_config(wildcards):
    """CFG as the job of this seed sees it (fersnet.config.with_seed)."""
    return fwork.with_seed(CFG, int(wildcards.seed))


def model_params(wildcards):
    """The params a training job reads (its fingerprint's params): a change re-runs it."""
    return fwork.rule_params(job_config(wildcards), "train", wildcards.model)


def judge_params(wildcards):
    return fwork.rule_params(job_config(wildcards), "judge")


def score_params(wildcards):
    return fwork.rule_params(job_config(wildcards), "score")


def pool_params(wildcards):
    return fwork.rule_params(job_config(wildcards), "pool")


def report_params(wildcards):
    return fwork.rule_params(CFG, "report")


def training_targets(dbs=None):
    dbs = DATABASES if dbs is None else dbs
    runs = [run_done(db, m, k, s) for db in dbs for m in MODELS for s in SEEDS for k in FOLDS]
    return runs + [judge_done(db, k, s) for db in dbs for s in SEEDS for k in FOLDS]


def score_targets(dbs=None):
    dbs = DATABASES if dbs is None else dbs
    scores = [scores_file(db, m, k, s) for db in dbs for m in SCORED for s in SEEDS for k in FOLDS]
    return scores + [pooled_file(db, m, s) for db in dbs for m in SCORED for s in SEEDS]


def pool_inputs(wildcards):
    return [scores_file(wildcards.db, m, k, wildcards.seed) for m in SCORED for k in FOLDS]


def parent_targets(dbs=None):
    dbs = DATABASES if dbs is None else dbs
    return [str(paths.parent_record(CFG, db, m)) for db in dbs for m in TRACKED_MODELS]


HAVE_PDFLATEX = shutil.which("pdflatex") is not None


def report_targets():
    """summary.json and headline.json, and report.pdf where pdflatex is installed: a report built
    without LaTeX is re-built once LaTeX is there."""
    names = [report_contents.SUMMARY, report_contents.HEADLINE] + ([report_contents.PDF] if HAVE_PDFLATEX else [])
    return [str(paths.reports_dir(CFG) / name) for name in names]


# The report's figures, tables (HTML) and PDF, flagged for `snakemake --report` by the report
# rule; the PDF only where pdflatex is there to compile it (fersnet/reports/contents.py).
REPORT_ITEMS = report_contents.report_items(CFG, pdf=HAVE_PDFLATEX)


def fold_outputs(wildcards):
    """What the (db, model) parent run summarises: every fold's result, and its scores if scored."""
    db, model = wildcards.db, wildcards.tracked
    if model == "judge":
        return [judge_done(db, k, s) for s in SEEDS for k in FOLDS]
    files = [run_done(db, model, k, s) for s in SEEDS for k in FOLDS]
    if model in SCORED:
        files += [scores_file(db, model, k, s) for s in SEEDS for k in FOLDS]
    return files


# --- job logs (fersnet/jobrun.py) ------------------------------------------------------------------
# Each shell command is written `{JOBRUN} {log} -- <command>`. The output goes to the log, whose
# last line then says how the job ended (exit code or signal). `-m` finds the project's fersnet
# from the folder Snakemake runs in.
JOBRUN = f"{shlex.quote(sys.executable)} -m fersnet.jobrun"


# --- stale results (fersnet/status.py; docs/decisions.md, "Stale results are re-made") -----------
# Before Snakemake plans: every existing result whose fingerprint is not the one params.yaml and the
# data imply now (made by hand with other params, from raw files or data that changed since, or by a
# CLI run whose outputs Snakemake has no record of) is added to --forcerun when the run's targets
# reach it, so that it and whatever reads it are re-made. Skipped inside a job of a remote executor.
from fersnet import status as fstatus  # noqa: E402


def stale_results():
    if workflow.remote_exec or workflow.subprocess_exec:
        return []
    try:
        return fstatus.stale_for_workflow(CFG)
    except fconfig.FersnetError as e:
        raise WorkflowError(f"fersnet: {e}") from None


STALE_RESULTS = stale_results()


def forced_stale_files(settings):
    files, message = fstatus.workflow_forcerun(CFG, STALE_RESULTS, settings.targets)
    if message:
        print(message, file=sys.stderr)
    return files


fwork.force_when_planning(workflow, forced_stale_files)


# --- outputs of another profile (fersnet/status.py; docs/decisions.md, "One profile per project folder")
# Called by the Snakefile's onstart, after the plan and before the first job (Snakemake skips it in dry
# runs and when there is nothing to do): outputs made under another params profile stop the run.
def refuse_other_profile():
    if workflow.remote_exec or workflow.subprocess_exec:
        return
    message = fstatus.workflow_profile_clash(CFG, workflow.dag_settings.targets)
    if message:
        print(message, file=sys.stderr)
        raise SystemExit(1)
