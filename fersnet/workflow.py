"""What the Snakemake workflow needs from the project, as plain tested functions.

The .smk files only wire rules; every decision they take (which params a rule depends on, how
folds are grouped into jobs, the frozen params snapshot of a run, the manifests DVC reads, a lost
MLflow init record) is made here. No torch, pandas or MLflow imports: Snakemake imports this at
every start.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import yaml

from fersnet import catalog, jobrun, ownership, paths, provenance
from fersnet.config import fold_groups, params_view, read_yaml, with_seed  # noqa: F401 - the workflow's names for them
from fersnet.paths import group_tag  # noqa: F401 - the workflow's name for it

SNAPSHOT_DIR = Path(".snakemake") / "fersnet"


# --- frozen params --------------------------------------------------------------------------------
def snapshot(cfg: dict, folder: Path = SNAPSHOT_DIR) -> str:
    """Write the run's resolved params once, at its start; every job of the run reads this file.

    The file is named by its content, so it never changes once written: editing params.yaml
    while a run goes on reaches no job of that run (the next run picks the edit up). It is a
    complete params file of one profile (`fersnet --params <it>` loads and validates it).
    """
    text = yaml.safe_dump(params_view(cfg), sort_keys=True)
    out = Path(folder) / f"params-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        ownership.write_text(out, "# The resolved params of one workflow run (written by the Snakefile at its start).\n"
                             + text)
    return str(out)


def file_digest(path) -> str | None:
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def params_changed_message(params_file, digest_at_start: str | None, snapshot_file: str) -> str | None:
    """None when params.yaml is as it was when the run started; otherwise what to tell the user.

    The jobs used the snapshot; DVC records params.yaml's values when the stage ends, so a run
    during which params.yaml was edited must not end as a success (dvc.lock would then claim
    values the jobs did not use).
    """
    if file_digest(params_file) == digest_at_start:
        return None
    return (f"fersnet: {params_file} was edited while this run was going on; its jobs used the params as "
            f"they were at the start ({snapshot_file}). Run again to apply the edit: only the jobs it "
            "changes run.")


# --- command-line config -----------------------------------------------------------------------
def command_line_config(entries) -> dict:
    """`snakemake --config KEY=VALUE ...` read as params.yaml is read (YAML, so `run_seeds=[0,1,2]` is a
    list of integers); Snakemake's own reading keeps the items of a list as strings. Merged by the
    Snakefile over Snakemake's config, whose command-line part it replaces."""
    out: dict = {}
    for entry in entries or []:
        key, sep, value = str(entry).partition("=")
        if not sep:
            continue                                  # Snakemake has refused it already
        out[key] = read_yaml(value, f"--config {entry}") if value != "" else None
    return out


# --- rule params (rerun triggers) -----------------------------------------------------------------
def rule_params(cfg: dict, verb: str, model: str | None = None) -> str:
    """The params a job depends on, as stable JSON: Snakemake re-runs the job when they change.

    The same selection as the job's fingerprint (fersnet.provenance.job_params), so a change
    re-plans exactly the jobs whose fingerprint changes; the data and the checkpoints a job reads
    are its input files, whose changes Snakemake sees itself.
    """
    return json.dumps(provenance.job_params(cfg, verb, model), sort_keys=True)


def train_needs(model: str) -> list[str]:
    """The models whose run of the same fold a training job of `model` reads: FES-DA and its
    control fine-tune that fold's fersnet."""
    source = catalog.model(model).fine_tunes
    return [source] if source else []


def synth_params(cfg: dict) -> str:
    """Settings the stand-in depends on."""
    return json.dumps({"synth": {k: v for k, v in cfg["synth"].items() if k != "out"}}, sort_keys=True)


def preprocess_params(cfg: dict, db: str) -> str:
    """Settings the processed data depends on (the database's root included)."""
    pp = {k: v for k, v in cfg["preprocess"].items() if k != "out"}
    return json.dumps({"n_folds": cfg["n_folds"], "folds": cfg["folds"], "preprocess": pp, "data": cfg["data"][db],
                       "check_counts": cfg["data"]["check_counts"]}, sort_keys=True)


# --- fold groups ----------------------------------------------------------------------------------
# fold_groups (fersnet.config) and group_tag (fersnet.paths) live where MLflow's parent step, which
# reads each group's benchmark file, finds them too.
def fold_arg(group: list[int]) -> str:
    return ",".join(map(str, group))


# --- GPUs ---------------------------------------------------------------------------------------
def gpu_share(jobs_per_device: int, n_devices: int) -> int:
    """Each GPU job's `gpu_share`: the default profile allows 100 in all, so that
    jobs_per_device x n_devices jobs run at once (each on its own slot: fersnet/gpu_slots.py)."""
    return max(1, 100 // (int(jobs_per_device) * max(1, int(n_devices))))


# --- manifests ------------------------------------------------------------------------------------
def write_manifest(inputs, output, log=None) -> None:
    """A stamp for DVC: one line per input with its size and content hash (mtime-free). `log`: the
    rule's log, which ends, like every job's (fersnet.jobrun), with a line saying how it ended."""
    t0 = time.monotonic()
    try:
        _write_manifest(inputs, output)
    except BaseException as e:
        if log:
            _log_end(log, f"failed ({type(e).__name__}: {e})", t0)
        raise
    if log:
        _log_end(log, "exit code 0", t0)


def _log_end(log, how: str, t0: float) -> None:
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(jobrun.end_line(how, time.monotonic() - t0))


def _write_manifest(inputs, output) -> None:
    lines = []
    for f in sorted(map(str, inputs)):
        data = Path(f).read_bytes()
        lines.append(f"{hashlib.sha1(data).hexdigest()}  {len(data):>10}  {f}")
    out = Path(output)
    ownership.create_dirs(out.parent, ownership.step("workflow"))
    ownership.clean_temps(out.parent)
    ownership.write_text(out, "\n".join(lines) + "\n")


# --- adding to Snakemake's --forcerun ---------------------------------------------------------------
def force_when_planning(workflow, files_for) -> None:
    """Make Snakemake re-run the jobs of `files_for(dag_settings)` as if they were `--forcerun` files.

    Snakemake reads the Snakefile before it receives its DAG settings (the targets, --forcerun): the
    API assigns `workflow.dag_settings` afterwards. This gives the workflow object a `dag_settings`
    property whose setter adds the files to `forcerun` at that assignment, so the plan (a dry run too)
    shows them as forced. `files_for` gets the settings (their `targets`) and returns file paths.
    """
    base = type(workflow)
    if getattr(base, "_fersnet_forcing", False):
        return

    def get(self):
        return self.__dict__.get("_fersnet_dag_settings")

    def put(self, settings):
        if settings is not None:
            extra = set(map(str, files_for(settings))) - set(settings.forcerun)
            if extra:
                settings.forcerun = frozenset(set(settings.forcerun) | extra)
        self.__dict__["_fersnet_dag_settings"] = settings

    current = workflow.__dict__.pop("dag_settings", None)
    workflow.__class__ = type(base.__name__, (base,), {"dag_settings": property(get, put), "_fersnet_forcing": True})
    if current is not None:
        workflow.dag_settings = current


# --- a lost MLflow init record ----------------------------------------------------------------------
# Every training and judge job waits for paths.mlflow_init_record (workflow/rules/train.smk), as
# ancient(). ancient() keeps an existing record's age from re-running anything, but a missing one
# makes Snakemake plan `track_init`, and a job planned to make an input re-runs every job that reads
# it, ancient or not: the whole grid would be trained again. So a record that is gone while results
# exist (paths.workflow_dir deleted, say) is re-created before Snakemake plans its jobs.
_DRY_RUN_FLAGS = ("--dry-run", "--dryrun", "--just-print", "-n")


def dry_run(argv) -> bool:
    """Whether a Snakemake command line asks for a dry run (-n, -np, --dry-run, ...)."""
    for arg in argv[1:]:
        if arg in _DRY_RUN_FLAGS or (arg.startswith("-") and not arg.startswith("--")
                                     and arg[1:].isalpha() and "n" in arg[1:]):
            return True
    return False


def init_record_lost(cfg: dict, results) -> bool:
    """True when the MLflow init record is missing while one of `results` (the fold results that
    wait for it) exists: it was made once and has been removed since."""
    return not paths.mlflow_init_record(cfg).exists() and any(Path(r).exists() for r in results)


def restore_init_record(cfg: dict, results, command: list[str], log, dry: bool) -> str | None:
    """Re-create a lost MLflow init record by running `command` (`fersnet track --params ... --init`,
    the track_init rule's command) now, its output going to `log`; returns the line to print, or
    None when the record is there (or was never made: a first run makes it through the rule). A
    store that cannot be used stops here, as the rule would stop the run (FersnetError naming the
    log). A dry run changes nothing and says what a real run will do instead."""
    if not init_record_lost(cfg, results):
        return None
    record = paths.mlflow_init_record(cfg)
    if dry:
        return (f"fersnet: {record} is missing; a real run re-creates it first (`fersnet track --init`) "
                "and re-runs nothing for it (this dry run may list the jobs that wait for it)")
    import subprocess

    from fersnet.errors import FersnetError
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        rc = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0 or not record.exists():
        lines = log.read_text(errors="replace").strip().splitlines()
        raise FersnetError(f"{record} was missing and could not be re-created ({lines[-1] if lines else 'no output'}; "
                           f"log: {log})")
    return f"fersnet: re-created the missing {record} (`fersnet track --init`, log {log}); no job re-runs for it"
