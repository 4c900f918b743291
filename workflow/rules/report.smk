# The report reads every result on disk (docs/architecture.md: reports/). One job writes the whole
# of reports/ (built aside and swapped in); its figures, tables and PDF are declared here too, so
# that `snakemake --report report.html` shows them (captions: workflow/report/*.rst).


rule report:
    input:
        training_targets(),
        score_targets(),
    output:
        # summary.json and headline.json; report.pdf, where pdflatex is there, is one of the REPORT_ITEMS
        [str(paths.reports_dir(CFG) / name) for name in (report_contents.SUMMARY, report_contents.HEADLINE)],
        [
            report(
                str(paths.reports_dir(CFG) / item.path),
                caption=f"../report/{item.caption}.rst",
                category=item.category,
                subcategory=item.subcategory,
                labels=item.labels,
            )
            for item in REPORT_ITEMS
        ],
    log:
        "logs/report/report.log",
    params:
        settings=report_params,
    shell:
        "{JOBRUN} {log} -- fersnet report {COMMON_ARGS}"
