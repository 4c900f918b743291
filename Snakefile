# fersnet-bench workflow: wiring only. Rules live in workflow/rules/*.smk, helpers in
# workflow/rules/common.smk, configuration in params.yaml (read and validated by fersnet.config at
# start; `--config profile=test` switches profile). See docs/orchestration.md.
#
# No `configfile:` directive: Snakemake would read params.yaml through its YAML templating, in
# which a value can run Python code (even under `snakemake -n`). workflow/rules/common.smk reads it
# as plain data with fersnet's strict loader instead.
from snakemake.utils import min_version

min_version("9.0")


# The front page of `snakemake --report report.html` (figures, tables, PDF: workflow/rules/report.smk).
report: "workflow/report/workflow.rst"


# The jobs find the project's `fersnet` through PATH (workflow/rules/common.smk).
envvars:
    "PATH",


include: "workflow/rules/common.smk"


# The databases and models are the catalogue's (fersnet/catalog.py).
wildcard_constraints:
    db="|".join(catalog.database_keys()),
    model="|".join(catalog.model_keys()),
    tracked="|".join(catalog.tracked_models()),
    fold=r"\d+",
    seed=r"\d+",


rule all:
    default_target: True
    input:
        report_targets(),
        parent_targets(),


rule all_folds:
    input:
        training_targets(),
        FOLDS_MANIFEST,


rule all_scores:
    input:
        score_targets(),
        SCORES_MANIFEST,


rule all_reports:
    input:
        report_targets(),


# One target per database of the catalogue (`snakemake ckplus`): its runs, scores and MLflow parents.
for _db in catalog.database_keys():

    rule:
        name:
            _db
        input:
            training_targets([_db]),
            score_targets([_db]),
            parent_targets([_db]),


include: "workflow/rules/data.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/report.smk"


onstart:
    # A run of one profile never replaces another profile's outputs (workflow/rules/common.smk).
    refuse_other_profile()


onsuccess:
    # One line on MLflow: fold runs logged, not logged, and the command that re-logs them.
    from fersnet.tracking.mlflow_log import workflow_summary

    workflow_summary(CFG)
    # Every job read the params snapshot taken at the start; if params.yaml was edited since,
    # the run must not end as a success (DVC would record the edited values in dvc.lock).
    _changed = fwork.params_changed_message(PARAMS_FILE, PARAMS_DIGEST_AT_START, PARAMS)
    if _changed:
        print(_changed, file=sys.stderr)
        raise SystemExit(1)


onerror:
    from fersnet.tracking.mlflow_log import workflow_summary

    workflow_summary(CFG)
