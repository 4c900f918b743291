# Scoring the synthesis of each generator on its fold (needs the fold's judge), then pooling
# FID/KID over the folds of each database (docs/architecture.md).


if BATCH_FOLDS:

    rule score:
        input:
            [run_done("{db}", "{model}", k) for k in FOLDS],
            [judge_done("{db}", k) for k in FOLDS],
        output:
            [scores_file("{db}", "{model}", k) for k in FOLDS],
        wildcard_constraints:
            model="fersnet|no_mtl|no_convflu|stargan",
        log:
            "logs/score/{db}_{model}.log",
        benchmark:
            "benchmarks/score/{db}_{model}.tsv"
        params:
            args=COMMON_ARGS,
            settings=score_params,
            script=RUN_FOLDS,
            folds=",".join(map(str, FOLDS)),
        threads: TRAIN_THREADS
        resources:
            gpu=GPU_COUNT,
            gpu_share=GPU_SHARE,
        shell:
            "python {params.script} score {params.args} --db {wildcards.db}"
            " --model {wildcards.model} --folds {params.folds} > {log} 2>&1"

else:

    rule score:
        input:
            run_done("{db}", "{model}", "{fold}"),
            judge_done("{db}", "{fold}"),
        output:
            scores_file("{db}", "{model}", "{fold}"),
        wildcard_constraints:
            model="fersnet|no_mtl|no_convflu|stargan",
        log:
            "logs/score/{db}_{model}_fold{fold}.log",
        benchmark:
            "benchmarks/score/{db}_{model}_fold{fold}.tsv"
        params:
            args=COMMON_ARGS,
            settings=score_params,
        threads: TRAIN_THREADS
        resources:
            gpu=GPU_COUNT,
            gpu_share=GPU_SHARE,
        shell:
            "fersnet score {params.args} --db {wildcards.db} --model {wildcards.model}"
            " --fold {wildcards.fold} > {log} 2>&1"


rule pool:
    input:
        pool_inputs,
    output:
        [pooled_file("{db}", m) for m in SCORED],
    log:
        "logs/pool/{db}.log",
    params:
        args=COMMON_ARGS,
    shell:
        "fersnet pool {params.args} --db {wildcards.db} > {log} 2>&1"


localrules:
    scores_manifest,


rule scores_manifest:
    input:
        score_targets(),
    output:
        SCORES_MANIFEST,
    log:
        "logs/manifest/scores.log",
    run:
        write_manifest(input, output[0])
