# MLflow: the store, experiments and parent runs are created once, serially, before the fan-out
# (SQLite and concurrent schema creation do not mix; docs/orchestration.md). Markers are written
# even when mlflow.enabled is false, so the graph is the same either way. A store that cannot be
# used stops track_init (no marker), so no job runs with its tracking silently lost; a fold that
# fails to log later is recorded and counted in the summary line at the end of the run (Snakefile).
# A marker lost while results exist is re-created here, before the jobs are planned: a missing
# marker would otherwise re-run every training and judge job (fersnet/tracking/markers.py).
from fersnet.errors import FersnetError  # noqa: E402

try:
    _restored = markers.restore_init_marker(CFG, training_targets(), ["fersnet", "track", "--params", PARAMS, "--init"],
                                            "logs/track/init.log", markers.dry_run(sys.argv))
except FersnetError as e:
    raise WorkflowError(f"fersnet: {e}") from None
if _restored:
    print(_restored, file=sys.stderr)


localrules:
    track_init,


rule track_init:
    output:
        INIT_MARKER,
    log:
        "logs/track/init.log",
    shell:
        "{JOBRUN} {log} -- fersnet track {COMMON_ARGS} --init"


rule track_parent:
    input:
        fold_outputs,
        ancient(INIT_MARKER),
    output:
        str(markers.parent_marker(CFG, "{db}", "{tracked}")),
    log:
        "logs/track/parent_{db}_{tracked}.log",
    shell:
        "{JOBRUN} {log} -- fersnet track {COMMON_ARGS} --parent {wildcards.db} {wildcards.tracked}"
