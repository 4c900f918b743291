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
        args=COMMON_ARGS,
    shell:
        "fersnet report {params.args} > {log} 2>&1"
