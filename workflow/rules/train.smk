# The fan-out: one job per (database, model, fold), plus the fold's judge (docs/architecture.md).
# Every job waits for the MLflow store (track_init) so that no two jobs create it at once.


if BATCH_FOLDS:

    rule train:
        input:
            train_batch_inputs,
            ancient(INIT_MARKER),
        output:
            [run_done("{db}", "{model}", k) for k in FOLDS],
        log:
            "logs/train/{db}_{model}.log",
        benchmark:
            "benchmarks/train/{db}_{model}.tsv"
        params:
            args=COMMON_ARGS,
            settings=model_params,
            script=RUN_FOLDS,
            folds=",".join(map(str, FOLDS)),
        threads: TRAIN_THREADS
        resources:
            gpu=GPU_COUNT,
            gpu_share=GPU_SHARE,
        run:
            for k in FOLDS:
                clear_stale_checkpoint(wildcards.db, wildcards.model, k)
            shell(
                "python {params.script} train {params.args} --db {wildcards.db}"
                " --model {wildcards.model} --folds {params.folds} > {log} 2>&1"
            )

    rule judge:
        input:
            processed_files("{db}"),
            ancient(INIT_MARKER),
        output:
            [judge_done("{db}", k) for k in FOLDS],
        log:
            "logs/judge/{db}.log",
        benchmark:
            "benchmarks/judge/{db}.tsv"
        params:
            args=COMMON_ARGS,
            settings=judge_params,
            script=RUN_FOLDS,
            folds=",".join(map(str, FOLDS)),
        threads: TRAIN_THREADS
        resources:
            gpu=GPU_COUNT,
            gpu_share=GPU_SHARE,
        shell:
            "python {params.script} judge {params.args} --db {wildcards.db}"
            " --folds {params.folds} > {log} 2>&1"

else:

    rule train:
        input:
            train_inputs,
            ancient(INIT_MARKER),
        output:
            run_done("{db}", "{model}", "{fold}"),
        log:
            "logs/train/{db}_{model}_fold{fold}.log",
        benchmark:
            "benchmarks/train/{db}_{model}_fold{fold}.tsv"
        params:
            args=COMMON_ARGS,
            settings=model_params,
        threads: TRAIN_THREADS
        resources:
            gpu=GPU_COUNT,
            gpu_share=GPU_SHARE,
        run:
            clear_stale_checkpoint(wildcards.db, wildcards.model, wildcards.fold)
            shell(
                "fersnet train {params.args} --db {wildcards.db} --model {wildcards.model}"
                " --fold {wildcards.fold} > {log} 2>&1"
            )


    rule judge:
        input:
            processed_files("{db}"),
            ancient(INIT_MARKER),
        output:
            judge_done("{db}", "{fold}"),
        log:
            "logs/judge/{db}_fold{fold}.log",
        benchmark:
            "benchmarks/judge/{db}_fold{fold}.tsv"
        params:
            args=COMMON_ARGS,
            settings=judge_params,
        threads: TRAIN_THREADS
        resources:
            gpu=GPU_COUNT,
            gpu_share=GPU_SHARE,
        shell:
            "fersnet judge {params.args} --db {wildcards.db} --fold {wildcards.fold} > {log} 2>&1"


localrules:
    folds_manifest,


rule folds_manifest:
    input:
        training_targets(),
    output:
        FOLDS_MANIFEST,
    log:
        "logs/manifest/folds.log",
    run:
        write_manifest(input, output[0])
