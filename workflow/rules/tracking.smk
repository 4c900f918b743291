# MLflow: the store, experiments and parent runs are created once, serially, before the fan-out
# (SQLite and concurrent schema creation do not mix; docs/orchestration.md). The init and parent
# records (fersnet/paths.py, workflow_dir) are written even when mlflow.enabled is false, so
# the graph is the same either way. A store that cannot be used stops track_init (no record), so no
# job runs with its tracking silently lost; a fold that fails to log later is recorded and counted
# in the summary line at the end of the run (Snakefile). An init record lost while results exist is
# re-created here, before the jobs are planned: a missing one would otherwise re-run every training
# and judge job (fersnet/workflow.py, restore_init_record).
from fersnet.errors import FersnetError  # noqa: E402

try:
    _restored = fwork.restore_init_record(CFG, training_targets(), ["fersnet", "track", "--params", PARAMS, "--init"],
                                          "logs/track/init.log", fwork.dry_run(sys.argv))
except FersnetError as e:
    raise WorkflowError(f"fersnet: {e}") from None
if _restored:
    print(_restored, file=sys.stderr)


localrules:
    track_init,


rule track_init:
    output:
        MLFLOW_INIT_RECORD,
    log:
        "logs/track/init.log",
    shell:
        "{JOBRUN} {log} -- fersnet track {COMMON_ARGS} --init"


rule track_parent:
    input:
        fold_outputs,
        ancient(MLFLOW_INIT_RECORD),
    output:
        str(paths.parent_record(CFG, "{db}", "{tracked}")),
    log:
        "logs/track/parent_{db}_{tracked}.log",
    shell:
        "{JOBRUN} {log} -- fersnet track {COMMON_ARGS} --parent {wildcards.db} {wildcards.tracked}"
