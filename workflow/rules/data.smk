# Raw databases (the synthetic stand-in) and their preprocessing (docs/architecture.md).


rule synth:
    output:
        directory(synth_folder("{db}")),
    log:
        "logs/synth/{db}.log",
    params:
        args=COMMON_ARGS,
        settings=synth_params,
    shell:
        "fersnet synth {params.args} --db {wildcards.db} > {log} 2>&1"


rule preprocess:
    input:
        raw_input,
    output:
        processed_files("{db}"),
    log:
        "logs/preprocess/{db}.log",
    params:
        args=COMMON_ARGS,
        settings=preprocess_params,
    shell:
        "fersnet preprocess {params.args} --db {wildcards.db} > {log} 2>&1"
