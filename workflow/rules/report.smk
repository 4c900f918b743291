# The report reads every result on disk (docs/architecture.md: reports/).


rule report:
    input:
        training_targets(),
        score_targets(),
    output:
        report_targets(),
    log:
        "logs/report/report.log",
    params:
        settings=report_params,
    shell:
        "fersnet report {COMMON_ARGS} > {log} 2>&1"
