# Pooling FID/KID over the folds of each database; the per-fold scoring jobs are defined with
# the training jobs (train.smk), one rule body per fold group (docs/architecture.md).


rule pool:
    input:
        pool_inputs,
    output:
        [pooled_file("{db}", m) for m in SCORED],
    log:
        "logs/pool/{db}_seed{seed}.log",
    params:
        settings=pool_params,
    shell:
        "{JOBRUN} {log} -- fersnet pool {COMMON_ARGS} --db {wildcards.db} --seed {wildcards.seed}"


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
        fwork.write_manifest(input, output[0], log[0])
