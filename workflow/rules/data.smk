# Raw databases (the synthetic stand-in) and their preprocessing (docs/architecture.md).


rule synth:
    output:
        directory(synth_folder("{db}")),
    log:
        "logs/synth/{db}.log",
    params:
        settings=synth_params,
    shell:
        "{JOBRUN} {log} -- fersnet synth {COMMON_ARGS} --db {wildcards.db}"


rule preprocess:
    input:
        raw_input,
    output:
        processed_files("{db}"),
    log:
        "logs/preprocess/{db}.log",
    params:
        settings=preprocess_params,
    shell:
        "{JOBRUN} {log} -- fersnet preprocess {COMMON_ARGS} --db {wildcards.db}"
