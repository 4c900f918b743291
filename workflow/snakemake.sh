#!/bin/sh
# How every DVC stage (dvc.yaml) runs Snakemake, from the project root: the snakemake on PATH; else
# the project's venv's, with .venv/bin put first on PATH (where the jobs find `fersnet`), so that
# `.venv/bin/dvc repro` works without the venv activated; else a one-line error saying what to do.
if ! command -v snakemake >/dev/null 2>&1; then
    if [ -x .venv/bin/snakemake ]; then
        PATH="$PWD/.venv/bin:$PATH"
        export PATH
    else
        echo "fersnet: snakemake is not on PATH and $PWD/.venv/bin/snakemake does not exist: set up the" \
             "project's venv (make venv), then activate it (source .venv/bin/activate) before dvc," \
             "or run the pipeline with make demo" >&2
        exit 127
    fi
fi
exec snakemake "$@"
