# The fan-out: every (database, model, seed) trained on each group of folds (orchestration.folds_per_job;
# one fold per job by default, all folds in one process in the CPU demo), plus the folds' judges
# (docs/architecture.md). One rule body, instantiated once per fold group. Every job waits for the
# MLflow store (track_init) so that no two jobs create it at once. A job re-runs when a param it
# reads changes (params.settings, the same selection as its fingerprint: fersnet/provenance.py)
# or an input file changes; the CLI then resumes a checkpoint only if it was made from the same
# inputs.

for _group in FOLD_GROUPS:
    _tag = fwork.group_tag(_group)

    rule:
        name:
            f"train_{_tag}"
        input:
            group_train_inputs(_group),
            ancient(MLFLOW_INIT_RECORD),
        output:
            [run_done("{db}", "{model}", k) for k in _group],
        log:
            f"logs/train/{{db}}_{{model}}_seed{{seed}}_{_tag}.log",
        benchmark:
            str(paths.benchmark_file("train", "{db}", "{model}", _tag))
        params:
            settings=model_params,
            folds=fwork.fold_arg(_group),
        threads: TRAIN_THREADS
        resources:
            gpu=GPU_COUNT,
            gpu_share=GPU_SHARE,
        shell:
            "{JOBRUN} {log} -- fersnet train {COMMON_ARGS} --db {wildcards.db} --model {wildcards.model}"
            " --fold {params.folds} --seed {wildcards.seed}"

    rule:
        name:
            f"judge_{_tag}"
        input:
            processed_files("{db}"),
            ancient(MLFLOW_INIT_RECORD),
        output:
            [judge_done("{db}", k) for k in _group],
        log:
            f"logs/judge/{{db}}_seed{{seed}}_{_tag}.log",
        benchmark:
            str(paths.benchmark_file("judge", "{db}", None, _tag))
        params:
            settings=judge_params,
            folds=fwork.fold_arg(_group),
        threads: TRAIN_THREADS
        resources:
            gpu=GPU_COUNT,
            gpu_share=GPU_SHARE,
        shell:
            "{JOBRUN} {log} -- fersnet judge {COMMON_ARGS} --db {wildcards.db} --fold {params.folds} --seed {wildcards.seed}"

    rule:
        name:
            f"score_{_tag}"
        input:
            [run_done("{db}", "{model}", k) for k in _group],
            [judge_done("{db}", k) for k in _group],
        output:
            [scores_file("{db}", "{model}", k) for k in _group],
        wildcard_constraints:
            model="|".join(catalog.generators()),
        log:
            f"logs/score/{{db}}_{{model}}_seed{{seed}}_{_tag}.log",
        benchmark:
            str(paths.benchmark_file("score", "{db}", "{model}", _tag))
        params:
            settings=score_params,
            folds=fwork.fold_arg(_group),
        threads: TRAIN_THREADS
        resources:
            gpu=GPU_COUNT,
            gpu_share=GPU_SHARE,
        shell:
            "{JOBRUN} {log} -- fersnet score {COMMON_ARGS} --db {wildcards.db} --model {wildcards.model}"
            " --fold {params.folds} --seed {wildcards.seed}"


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
        fwork.write_manifest(input, output[0], log[0])
