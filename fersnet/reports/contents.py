"""What `fersnet report` writes under paths.reports, as a function of the params alone.

The Snakefile declares these files as the report rule's outputs (and flags the figures, tables
and the PDF for `snakemake --report`), and dvc.yaml's plots read the plot data; `fersnet report`
writes exactly them once every result of the grid is on disk (tests/test_report_contents.py
builds reports and compares). Standard library only: Snakemake imports this at every start.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fersnet import catalog, names

# The model orders of the report's tables are the catalogue's (fersnet/catalog.py).
REFERENCE = catalog.REFERENCE        # the paired tests compare FERSNet against each ablation

SUMMARY = "summary.json"
HEADLINE = "headline.json"   # the DVC metric: a few numbers per database and model
PDF = "report.pdf"
CROSS_DATABASE_TABLES = ("completeness", "fer_accuracy", "fer_balanced", "ablation", "protocol")

OVERVIEW = "Overview"        # Snakemake report category of what spans every database
ALL_MODELS = "All models"


def confusion_plot(db: str) -> str:
    """DVC confusion plot data of FERSNet on `db`: `actual,predicted`, one row per test prediction."""
    return f"plots/confusion/{db}.csv"


def curve_plot(db: str, model: str) -> str:
    """DVC plot data of one FER model's training curves on `db`: `epoch,train_accuracy,test_accuracy`."""
    return f"plots/curves/{db}_{model}.csv"


def fer_models(cfg: dict) -> list[str]:
    """The run's models that classify, in the FER tables' row order."""
    return catalog.fer_models(cfg["models"])


def gen_models(cfg: dict) -> list[str]:
    """The run's models with a generator of their own, in the synthesis tables' row order."""
    return catalog.generators(cfg["models"])


def plot_files(cfg: dict) -> list[str]:
    """The plot data files, relative to paths.reports (written for every database, even before results)."""
    files = [confusion_plot(db) for db in cfg["databases"]]
    return files + [curve_plot(db, m) for db in cfg["databases"] for m in fer_models(cfg)]


@dataclass(frozen=True)
class Item:
    """A file of the report shown by `snakemake --report`: where it is (relative to paths.reports),
    its caption (workflow/report/<caption>.rst), and where the page files it."""

    path: str
    caption: str
    category: str
    subcategory: str
    labels: dict = field(default_factory=dict, compare=False, hash=False)


def report_items(cfg: dict, pdf: bool) -> list[Item]:
    """The figures, tables (HTML) and the PDF a complete grid's report holds; `pdf`: whether
    pdflatex is there to compile it. Categories: Overview (the PDF and what spans the databases),
    then one per database, subdivided by model."""
    fer, gen, ref = fer_models(cfg), gen_models(cfg), REFERENCE in cfg["models"]
    ref_name = names.MODEL[REFERENCE]

    def table(name: str, category: str, subcategory: str, what: str) -> Item:
        return Item(f"tables/{name}.html", "table", category, subcategory, {"type": "table", "content": what})

    def figure(name: str, caption: str, category: str, subcategory: str, what: str) -> Item:
        return Item(f"figures/{name}.png", caption, category, subcategory, {"type": "figure", "content": what})

    items = [Item(PDF, "pdf", OVERVIEW, "Report", {"type": "PDF", "content": "the whole report"})] if pdf else []
    items.append(table("completeness", OVERVIEW, ALL_MODELS, "finished folds"))
    items.append(table("fer_accuracy", OVERVIEW, ALL_MODELS, "FER accuracy"))
    if fer:
        items.append(table("fer_balanced", OVERVIEW, ALL_MODELS, "balanced accuracy and macro-F1"))
    items.append(table("ablation", OVERVIEW, ALL_MODELS, "ablation with paired tests"))
    if fer:
        items.append(table("protocol", OVERVIEW, ALL_MODELS, "selected vs. best-epoch accuracy"))
        items.append(figure("fold_accuracy", "fold_accuracy", OVERVIEW, ALL_MODELS, "accuracy of every fold"))
    for db in cfg["databases"]:
        name = names.DATABASE[db]
        if ref:
            items.append(figure(f"confusion_{db}", "confusion", name, ref_name, "confusion matrix"))
            items.append(table(f"confusion_{db}", name, ref_name, "confusion matrix"))
            items.append(figure(f"gates_{db}", "gates", name, ref_name, "ConvFLU gate values"))
            items.append(figure(f"synthesis_grid_{db}", "synthesis_grid", name, ref_name, "synthesized faces"))
        if fer:
            items.append(figure(f"training_curves_{db}", "training_curves", name, ALL_MODELS, "training curves"))
        if gen:
            items.append(table(f"synthesis_{db}", name, ALL_MODELS, "synthesis scores"))
    return items
