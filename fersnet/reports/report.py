"""`fersnet report`: tables, figures, statistics, summary.json and report.pdf from the results on disk.

Everything is built in a marked temporary sibling of reports/ and swapped in as one folder
only when the whole build (including pdflatex, when installed) succeeded, so a failed or killed
run leaves the previous report intact and never old files beside new ones (fersnet.ownership).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from fersnet import catalog, names, ownership, paths, provenance, status
from fersnet.errors import DataError, FersnetError
from fersnet.reports import aggregate as agg
from fersnet.reports import contents, figures, html_tables, published, tables, tuning

TEMPLATE = Path(__file__).resolve().with_name("report.tex.j2")
SUMMARY = contents.SUMMARY
HEADLINE = contents.HEADLINE
OUTPUTS = ("tables", "figures", "plots", "report.tex", "report.pdf", HEADLINE)   # installed with SUMMARY
HOW = "pick another paths.reports, or empty it"
MADE_BY = ownership.step("report")
PDFLATEX_TIMEOUT_S = 300


def main(cfg: dict, args) -> dict:
    """CLI entry point (`fersnet report`)."""
    summary = build_report(cfg)
    out = paths.reports_dir(cfg)
    return {"reports": str(out), "pdf": summary["pdf"], "problems": summary["n_problems"]}


def build_report(cfg: dict) -> dict:
    """Build every table, figure and the PDF under paths.reports_dir(cfg); returns the summary dict."""
    col = agg.collect(cfg)
    if not (col.folds.status == "ok").any() and not (col.synthesis.status == "ok").any():
        raise DataError(f"{cfg['paths']['results']}: no finished results (no metrics.json or scores.json) for "
                        f"databases {', '.join(cfg['databases'])}; run `fersnet train` (or snakemake) first")
    out = paths.reports_dir(cfg)
    ownership.adopt_earlier(out, OUTPUTS + (SUMMARY, "report.log"), (SUMMARY,), MADE_BY)
    ownership.check_data_roots(cfg, out, "fersnet report")
    ownership.check_replaceable(out, MADE_BY, HOW)
    ownership.clean_temps(out)
    # built aside and swapped in whole; a full disk is one line naming `out` (errors.DiskFull)
    with ownership.build_aside(out, MADE_BY, HOW) as tmp:
        context, summary = write_contents(cfg, col, tmp)
        (tmp / "report.tex").write_text(render_template(context))
        summary["pdf"] = compile_pdf(tmp, out)
        (tmp / HEADLINE).write_text(json.dumps(_json_safe(headline(summary)), indent=2) + "\n")
        (tmp / SUMMARY).write_text(json.dumps(_json_safe(summary), indent=2, sort_keys=True) + "\n")
        keep_outputs_only(tmp)
    return summary


def write_contents(cfg: dict, col: agg.Collected, root: Path) -> tuple[dict, dict]:
    """Write tables/, figures/ and plots/ under `root`; return the template context and the summary."""
    tdir, fdir = root / "tables", root / "figures"
    tdir.mkdir()
    fdir.mkdir()
    dbs = cfg["databases"]

    def table(name: str, tex: str | None) -> str | None:
        """tables/<name>.tex for the PDF, the same table as an HTML page (snakemake --report), and
        tables/paper/<name>.tex with its <name>_notes.tex for a paper (tables.as_paper)."""
        if tex is None:
            return None
        (tdir / f"{name}.tex").write_text(tex)
        (tdir / f"{name}.html").write_text(html_tables.table_page(tex, name))
        paper, notes = tables.as_paper(tex, wide=name not in tables.SINGLE_COLUMN and not name.startswith("confusion_"))
        (tdir / "paper").mkdir(exist_ok=True)
        (tdir / "paper" / f"{name}.tex").write_text(paper)
        label = re.search(r"\\label\{([^}]*)\}", tex)
        ref = f"Table~\\ref{{{label.group(1)}}}" if label else "the table"
        (tdir / "paper" / f"{name}_notes.tex").write_text(f"\\paragraph{{Notes to {ref}.}} {notes}\n" if notes else "")
        return f"tables/{name}"

    def figure(name: str, path) -> str | None:
        return f"figures/{name}" if path else None

    ablation_tex, tests = tables.ablation(cfg, col)
    context = dict(
        profile=cfg["profile"], n_folds=cfg["n_folds"], seeds=agg.seeds_of(cfg),
        databases=", ".join(names.DATABASE[d] for d in dbs),
        synthetic=[names.DATABASE[d] for d in dbs if "synthetic" in Path(cfg["data"][d]["root"]).parts],
        problems=[dict(file=tables.tex_escape(p.file), reason=tables.tex_escape(p.reason)) for p in col.problems],
        completeness=table("completeness", tables.completeness(cfg, col)),
        fer_accuracy=table("fer_accuracy", tables.fer_accuracy(cfg, col)),
        fer_balanced=table("fer_balanced", tables.fer_balanced(cfg, col)),
        ablation=table("ablation", ablation_tex),
        protocol=table("protocol", tables.protocol(cfg, col)),
        tuning=tuning.paragraph(cfg),
        fold_accuracy_width={1: 0.45, 2: 0.75}.get(len(dbs), 1.0),     # one panel per database
        fold_accuracy=figure("fold_accuracy.png", figures.fold_accuracy(cfg, col, fdir / "fold_accuracy.png")),
        per_db=[],
    )
    synthesis_numbers = {}
    for db in dbs:
        syn_tex, synthesis_numbers[db] = tables.synthesis(cfg, col, db) if _has_generators(cfg) else (None, {})
        grid = figures.synthesis_grid(cfg, db, fdir / f"synthesis_grid_{db}.png")
        context["per_db"].append(dict(
            key=db, name=names.DATABASE[db],
            confusion=table(f"confusion_{db}", tables.confusion(cfg, col, db)),
            heatmap=figure(f"confusion_{db}.png",
                           figures.confusion_heatmap(cfg, col, db, fdir / f"confusion_{db}.png")),
            synthesis=table(f"synthesis_{db}", syn_tex),
            grid=f"figures/synthesis_grid_{db}.png" if grid else None,
            grid_fold=grid[1] if grid else None, grid_seed=grid[2] if grid else None,
            curves=figure(f"training_curves_{db}.png",
                          figures.training_curves(cfg, db, fdir / f"training_curves_{db}.png")),
            gates=figure(f"gates_{db}.png", figures.gate_means(cfg, db, fdir / f"gates_{db}.png")),
        ))
    write_confusion_plots(cfg, col, root)
    write_curve_plots(cfg, root)
    prov = provenance.results_provenance(cfg)
    prov["not_current"] = status.not_current(cfg)      # results whose fingerprint is not today's
    summary = build_summary(cfg, col, tests, synthesis_numbers, prov["data"])
    summary["provenance"] = prov
    context["provenance"] = provenance_context(prov)
    return context, summary


def provenance_context(prov: dict) -> dict:
    """The provenance paragraph of the PDF: code versions, environment, data (LaTeX-escaped)."""
    esc = tables.tex_escape
    kinds = ("training", "judge", "scores")
    return dict(
        report_code=esc(prov["report_code"]), mixed=prov["mixed"], report_differs=prov["report_differs"],
        not_current=[dict(result=esc(r["result"]), why=esc(r["why"])) for r in prov.get("not_current", [])[:12]]
        + ([dict(result=f"and {n - 12} more", why="listed in summary.json")]
           if (n := len(prov.get("not_current", []))) > 12 else []),
        code=[dict(label=esc(label), counts=", ".join(f"{n} {k}" for k in kinds if (n := c.get(k))))
              for label, c in sorted(prov["code"].items())],
        torch=esc(", ".join(prov["torch"]) or "unrecorded"), device=esc(", ".join(prov["device"]) or "unrecorded"),
        cpu=esc(", ".join(prov["cpu_capability"]) or "unrecorded"),
        data=[dict(name=esc(names.DATABASE[db]), source=d["source"], hash=esc((d["data_hash"] or "unrecorded")[:12]))
              for db, d in prov["data"].items()],
    )


def _has_generators(cfg: dict) -> bool:
    return bool(catalog.generators(cfg["models"]))


def write_confusion_plots(cfg: dict, col: agg.Collected, root: Path) -> None:
    """plots/confusion/<db>.csv: `actual,predicted`, one row per FERSNet test prediction (DVC confusion plot).

    Written for every database, header-only when there are no predictions yet, so the plot
    definitions in dvc.yaml always find their file.
    """
    for db in cfg["databases"]:
        path = root / contents.confusion_plot(db)
        path.parent.mkdir(parents=True, exist_ok=True)
        agg.prediction_pairs(cfg, col.folds, db).to_csv(path, index=False)


CURVE_COLUMNS = {"train_accuracy": "train_acc", "test_accuracy": "test_acc_diagnostic"}   # plot <- history.csv


def write_curve_plots(cfg: dict, root: Path) -> None:
    """plots/curves/<db>_<model>.csv, one per FER model: `progress,train_accuracy,test_accuracy,n_runs`,
    the mean over runs (every fold of every seed; %) of history.csv's training accuracy and per-epoch test
    accuracy (the diagnostic one, never used for selection) against the fraction of training, every run
    behind every point (aggregate.progress_curve); DVC plots them per experiment. Header-only when no
    fold has a history yet."""
    for db in cfg["databases"]:
        for model in contents.fer_models(cfg):
            h = agg.read_history(cfg, db, model)
            curves = pd.DataFrame(columns=["progress", *CURVE_COLUMNS, "n_runs"])
            if not h.empty:
                per_column = {}
                for plot, col in CURVE_COLUMNS.items():
                    values = figures.as_percent(h[col]) if col in h.columns else pd.Series(np.nan, index=h.index)
                    per_column[plot] = agg.progress_curve(h.assign(**{col: values}), col)
                frames = [c for c in per_column.values() if not c.empty]
                if frames:
                    base = frames[0]
                    curves = pd.DataFrame({"progress": base["progress"].round(4)})
                    for plot, c in per_column.items():
                        curves[plot] = (np.interp(base["progress"], c["progress"], c["mean"]).round(4)
                                        if not c.empty else np.nan)
                    curves["n_runs"] = base["n_runs"].to_numpy()
            path = root / contents.curve_plot(db, model)
            path.parent.mkdir(parents=True, exist_ok=True)
            curves.to_csv(path, index=False)


SUMMARY_NOTES = {
    "measured": "this benchmark's results, in %: mean over the finished runs (test folds x training seeds); "
                "*_std: sample std over the folds of each fold's mean over its seeds; seed_std: sample std over "
                "the seeds of each seed's mean over its folds (null with fewer than two seeds); accuracy_per_seed: "
                "each seed's mean over its folds; data_source says whether a database is the synthetic stand-in "
                "or a licensed copy",
    "published": "numbers printed in the paper, on the real databases; copied, never re-run here",
    "diagnostic": "chosen by looking at the test fold (the epoch that happened to be best on it); not a "
                  "result, only a measure of how much such a selection would inflate the reported accuracy",
}


def build_summary(cfg: dict, col: agg.Collected, tests: dict, synthesis_numbers: dict,
                  data: dict | None = None) -> dict:
    """summary.json (the DVC metric), in three parts kept apart: `measured` (per database: its data
    source, then per model the statistics over folds and seeds in %, test-selected numbers under `diagnostic`),
    `published` (the paper's FERSNet accuracies) and `notes` saying which is which.

    `data`: db -> {"source": ...}, the report's provenance (fersnet.provenance.results_provenance).
    """
    summary: dict = {"profile": cfg["profile"], "n_folds_expected": cfg["n_folds"], "seeds": agg.seeds_of(cfg),
                     "std_ddof": agg.STD_DDOF,
                     "n_problems": len(col.problems), "notes": SUMMARY_NOTES,
                     "measured": {}, "published": published_summary(cfg)}
    for db in cfg["databases"]:
        source = (data or {}).get(db, {}).get("source") or (
            "stand-in" if provenance.is_stand_in(cfg, db) else "licensed copy")
        measured: dict = {"data_source": source}
        for model in cfg["models"]:
            entry = _fer_entry(col, db, model, tests) if catalog.model(model).classifies else _runs_entry(col, db, model)
            syn = synthesis_numbers.get(db, {}).get(model)
            if syn:
                entry.update({f"synthesis_{k}": v for k, v in syn.items()
                              if k not in ("fid_unavailable", "n_folds", "n_runs", "seeds")})
                entry["synthesis_n_folds"] = syn["n_folds"]
                entry["synthesis_fid_available"] = syn["fid_unavailable"] is None and math.isfinite(syn["fid"])
            measured[model] = entry
        references = {r: v for r, v in synthesis_numbers.get(db, {}).items() if r in agg.SYNTHESIS_REFERENCES}
        if references:          # what no synthesis (copy input) and perfect synthesis (real target) score
            measured["synthesis_references"] = references
        summary["measured"][db] = measured
    return summary


# headline.json <- summary.json's `measured` entries: the few numbers a reader compares first (in %)
HEADLINE_KEYS = {"accuracy": "accuracy_mean", "balanced_accuracy": "balanced_accuracy_mean",
                 "judged_synthesis": "synthesis_judge_accuracy_mean", "fid": "synthesis_fid"}


def headline(summary: dict) -> dict:
    """headline.json, the DVC metric (`dvc metrics show`, `dvc exp show`): per database and model,
    FER accuracy and balanced accuracy (mean over runs, %), judged synthesis (%) and FID where the
    model has them; everything else stays in summary.json, which would print hundreds of columns."""
    out: dict = {}
    for db, models in summary["measured"].items():
        out[db] = {}
        for model, entry in models.items():
            if not isinstance(entry, dict):
                continue            # data_source
            numbers = {name: entry[key] for name, key in HEADLINE_KEYS.items()
                       if isinstance(entry.get(key), (int, float)) and math.isfinite(entry[key])}
            if numbers:
                out[db][model] = numbers
    return out


def _runs_entry(col: agg.Collected, db: str, model: str) -> dict:
    """Which runs of (db, model) finished, for a model without an accuracy (StarGAN): folds, runs, seeds."""
    sel = col.folds[(col.folds.db == db) & (col.folds.model == model) & (col.folds.status == "ok")]
    return {"n_folds": int(sel.fold.nunique()), "n_runs": len(sel), "seeds": sorted(int(s) for s in set(sel.seed))}


def _fer_entry(col: agg.Collected, db: str, model: str, tests: dict) -> dict:
    """One FER model's measured numbers on one database (accuracies in %; `accuracy_std` the fold
    spread, `seed_std` the seed spread of the accuracy; `mean_diff_vs_<ref>`: this model minus <ref>,
    in points, over the runs both finished, paired by (fold, seed))."""
    acc = agg.accuracy_stats(col.folds, db, model)
    entry: dict = {"accuracy_mean": acc["mean"], "accuracy_std": acc["std"], "n_folds": acc["n_folds"],
                   "n_runs": acc["n_runs"], "seeds": sorted(acc["per_seed"]), "seed_std": acc["seed_std"],
                   "accuracy_per_seed": {f"seed{s}": v for s, v in acc["per_seed"].items()}}
    for key in ("balanced_accuracy", "macro_f1"):
        s = agg.accuracy_stats(col.folds, db, model, key)
        entry.update({f"{key}_mean": s["mean"], f"{key}_std": s["std"], f"{key}_seed_std": s["seed_std"]})
    for key in ("n_train_real", "n_train_synthetic"):
        values = agg.run_values(col.folds, db, model, key)
        if values:
            entry[f"{key}_mean"] = agg.mean_std(values.values())["mean"]
    for ref in (agg.REFERENCE, "fes_da_real"):
        # the ablation's tests are fersnet minus each model; fes_da's is fes_da minus its control
        t, sign = (tests.get((db, model)), -1.0) if ref == agg.REFERENCE else (tests.get((db, model, ref)), 1.0)
        if t:
            entry.update({f"p_wilcoxon_vs_{ref}": t["p_wilcoxon"], f"p_ttest_vs_{ref}": t["p_ttest"],
                          f"n_pairs_vs_{ref}": t["n_pairs"], f"mean_diff_vs_{ref}": sign * t["mean_diff"]})
    best = agg.accuracy_stats(col.folds, db, model, "best_epoch_test_accuracy")
    entry["diagnostic"] = {"best_epoch_test_accuracy_mean": best["mean"]}
    return entry


def published_summary(cfg: dict) -> dict:
    """The paper's FERSNet accuracies (%) per database, without and with BU-4DFE pre-training."""
    rows = {r.method: r for r in published.REPORTED}
    out: dict = {"source": published.SOURCE}
    for db in cfg["databases"]:
        out[db] = {"fersnet": rows["FERSNet"].value(db),
                   "fersnet_pretrained_bu4dfe": rows["FERSNet (BU-4DFE)"].value(db)}
    return out


def _json_safe(x):
    """NaN/inf -> null (JSON has no NaN), numpy scalars -> Python numbers."""
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def render_template(context: dict) -> str:
    """reports/report.tex.j2 rendered with LaTeX-friendly Jinja delimiters (((* block *)), ((( var ))))."""
    if not TEMPLATE.is_file():
        raise FersnetError(f"{TEMPLATE}: the report template is missing (it is committed with the project)")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), undefined=jinja2.StrictUndefined,
        block_start_string="((*", block_end_string="*))", variable_start_string="(((",
        variable_end_string=")))", comment_start_string="((=", comment_end_string="=))",
        trim_blocks=True, lstrip_blocks=True, autoescape=False, keep_trailing_newline=True)
    try:
        return env.get_template(TEMPLATE.name).render(**context)
    except jinja2.TemplateError as e:
        raise FersnetError(f"{TEMPLATE}: template error: {e}") from None


def compile_pdf(folder: Path, out: Path) -> str:
    """pdflatex report.tex twice (cross-references) in `folder`; 'compiled' or why it was skipped.

    A LaTeX error is fatal: the log is kept as reports/report.log and the error names it.
    """
    exe = shutil.which("pdflatex")
    if exe is None:
        reason = ("skipped: pdflatex not installed (apt-get install texlive-latex-base "
                  "texlive-latex-recommended texlive-latex-extra; see docs/reports.md)")
        print(f"fersnet report: warning: report.pdf {reason}", file=sys.stderr)
        return reason
    cmd = [exe, "-interaction=nonstopmode", "-halt-on-error", "report.tex"]
    env = dict(os.environ, TEXMFOUTPUT=str(folder))
    for _ in range(2):
        try:
            run = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, errors="replace",
                                 timeout=PDFLATEX_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            raise FersnetError(f"pdflatex on {out / 'report.tex'} took over {PDFLATEX_TIMEOUT_S}s") from None
        if run.returncode != 0:
            log = folder / "report.log"
            if log.is_file():
                ownership.claim_folder(out, MADE_BY, HOW)
                shutil.copyfile(log, out / "report.log")
            first = next((ln for ln in run.stdout.splitlines() if ln.startswith("!")), "see the log")
            raise FersnetError(f"pdflatex failed on report.tex: {first} (full log: {out / 'report.log'})")
    return "compiled"


def keep_outputs_only(tmp: Path) -> None:
    """Remove from the built folder `tmp`, before it is swapped in, all but the outputs (LaTeX's
    auxiliary files go; a stale report.log goes with the old report)."""
    keep = set(OUTPUTS) | {SUMMARY, ownership.MARKER}
    for p in tmp.iterdir():
        if p.name not in keep:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
