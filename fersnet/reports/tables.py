"""LaTeX tables (pandas Styler.to_latex, booktabs rules) from the aggregated results of folds and seeds.

Every table compiles standalone with only `booktabs` (tests/test_report.py wraps each one in a
minimal document). Cells are display strings made from numbers; bold comes from the numeric
values (max for accuracy/SSIM, min for FID/KID), never from the strings.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from fersnet import catalog, names
from fersnet.reports import aggregate as agg
from fersnet.reports import published

DASH = "---"                          # LaTeX em dash: a model/database with no usable fold
NA = "n/a"
BOLD = "textbf:--rwrap;"              # Styler css -> \textbf{cell}
UP, DOWN = r"$\uparrow$", r"$\downarrow$"
YES, NO = r"$\surd$", r"$\times$"     # pre-training marks without extra packages (only booktabs)

_TEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    """Plain text (file names, error reasons) made safe for LaTeX; `code` in backticks (as in error
    messages) becomes \\texttt{code}."""
    parts = str(text).split("`")
    out = []
    for i, part in enumerate(parts):
        escaped = "".join(_TEX_SPECIALS.get(c, c) for c in part)
        if i % 2 == 0:
            out.append(escaped)
        elif i < len(parts) - 1:                             # between a pair of backticks
            out.append(f"\\texttt{{{escaped}}}")
        else:                                                # a lone backtick
            out.append("\\textasciigrave{}" + escaped)
    return "".join(out).encode("ascii", "replace").decode("ascii")


def signed(value: float, decimals: int = 2) -> str:
    """A difference with its sign, the minus a real one in math mode: `+1.20`, `$-$0.35`."""
    text = f"{value:+.{decimals}f}"
    return "$-$" + text[1:] if text.startswith("-") else text


def stacked(first: str, second: str) -> str:
    """A cell of two centred lines (a one-column tabular: core LaTeX, no extra package)."""
    # `{}` keeps the second line's `[` from being read as the optional argument of `\\`
    return f"\\begin{{tabular}}[c]{{@{{}}c@{{}}}}{first}\\\\{{}}{second}\\end{{tabular}}"


def seed_spread(value: float | None, decimals: int = 2) -> str:
    """`[0.35]`: the seed spread of a cell; `[---]` when fewer than two seeds finished."""
    return f"[{value:.{decimals}f}]" if value is not None and math.isfinite(value) else f"[{DASH}]"


def fmt_mean_std(s: dict, expected: int, decimals: int = 2, seeds: bool = False, mark: str = "") -> str:
    """`97.12 $\\pm$ 1.20` (mean over runs, fold spread), with `(k/N)` when only k of the N expected
    runs (folds x seeds) are usable; DASH when none. `seeds` (a grid of two or more seeds): a second
    line gives the seed spread in brackets, then the count: `97.12 $\\pm$ 1.20` over `[0.35] (29/30)`.
    `mark` (a footnote mark) ends the cell, or its first line when stacked."""
    if s["n"] == 0:
        return DASH
    text = f"{s['mean']:.{decimals}f}"
    if math.isfinite(s["std"]):
        text += rf" $\pm$ {s['std']:.{decimals}f}"
    count = f" ({s['n']}/{expected})" if s["n"] < expected else ""
    if seeds:
        return stacked(text + mark, seed_spread(s.get("seed_std"), decimals) + count)
    return text + count + mark


def fmt_p(p: float) -> str:
    """A p-value with 3 decimals (`$<$0.001` below that); DASH when undefined."""
    if p is None or not math.isfinite(p):
        return DASH
    return r"$<$0.001" if p < 0.001 else f"{p:.3f}"


def bold_mask(values: pd.DataFrame, best: str = "max", axis: int = 0) -> pd.DataFrame:
    """True where a cell holds the best finite value of its column (axis=0) or row (axis=1)."""
    v = values.astype(float)
    target = v.max(axis=axis) if best == "max" else v.min(axis=axis)
    return v.eq(target, axis=1 - axis) & v.notna()


def render(display: pd.DataFrame, caption: str, label: str, bold: pd.DataFrame | None = None,
           column_format: str | None = None, note: str | None = None, clines: str | None = None,
           font: str = "\\small", colsep: str = "4pt") -> str:
    """A booktabs LaTeX table from display strings; `bold` marks cells to set in bold."""
    styler = display.style.format(escape=None, na_rep=DASH)
    if bold is not None:
        css = pd.DataFrame(np.where(bold.reindex_like(display).fillna(False).to_numpy(dtype=bool), BOLD, ""),
                           index=display.index, columns=display.columns)
        styler = styler.apply(lambda _: css, axis=None)
    n_index = display.index.nlevels
    column_format = column_format or "l" * n_index + "c" * display.shape[1]
    tex = styler.to_latex(hrules=True, caption=caption, label=label, position="htbp",
                          position_float="centering", column_format=column_format,
                          multicol_align="c", multirow_align="naive", clines=clines)
    # Group separators as booktabs rules across the whole table (pandas draws \\cline over the index only).
    tex = re.sub(r"\\cline\{[0-9-]+\}\n(?=\\bottomrule)", "", tex)
    tex = re.sub(r"\\cline\{[0-9-]+\}", r"\\midrule", tex)
    # A smaller font and tighter columns keep the widest table (ablation, 3 databases) inside A4.
    tex = tex.replace("\\centering\n", f"\\centering\n{font}\\setlength{{\\tabcolsep}}{{{colsep}}}\n", 1)
    tex = fit_to_width(tex)
    short = short_caption(caption)
    if short != caption:           # the list of tables (and a paper's drop-in, as_paper) gets the first sentence
        tex = tex.replace(f"\\caption{{{caption}}}", f"\\caption[{short}]{{{caption}}}", 1)
    if note:
        tex = tex.replace("\\end{table}", f"{NOTE_START}{note}{NOTE_END}\\end{{table}}")
    return tex


SINGLE_COLUMN = ()      # tables besides the confusion matrices that fit one column of a paper; the others are table*
NOTE_START = "\\par\\smallskip\n{\\footnotesize\\raggedright "
NOTE_END = "\\par}\n"
# "... per database. Re-run: ..." -> the sentence before; not after an abbreviation (e.g., vs., w.)
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)(?<!\bw)(?<!\bet al)\.\s+(?=[A-Z(\\$])")


def short_caption(caption: str) -> str:
    """The caption's first sentence (outside braces and math), for the list of tables and a paper."""
    depth, math = 0, False
    for m in _SENTENCE_END.finditer(caption):
        before = caption[:m.start()]
        depth = before.count("{") - before.count("}")
        math = before.count("$") % 2 == 1
        if depth == 0 and not math:
            return caption[:m.start() + 1]
    return caption


def as_paper(tex: str, wide: bool) -> tuple[str, str]:
    """A table in the form a paper inputs: the short caption only, the rest of the caption and the
    notes returned apart (for a `<name>_notes.tex`), a smaller font, and `table*` (the full text width
    of a two-column paper) where `wide`. Fits a two-column page 7 in wide without graphicx; with it,
    fit_to_width still scales a wider one down."""
    m = re.search(r"\\caption(?:\[(?P<short>[^\]]*)\])?\{", tex)
    notes = []
    if m:
        start = m.end()
        depth, i = 1, start
        while depth:
            depth += {"{": 1, "}": -1}.get(tex[i], 0)
            i += 1
        long = tex[start:i - 1]
        short = m.group("short") or long
        rest = long[len(short):].strip()
        if rest:
            notes.append(rest)
        tex = tex[:m.start()] + f"\\caption{{{short}}}" + tex[i:]
    n = tex.find(NOTE_START)
    if n >= 0:
        e = tex.index(NOTE_END, n)
        notes.append(tex[n + len(NOTE_START):e].strip())
        tex = tex[:n] + tex[e + len(NOTE_END):]
    tex = re.sub(r"\\(small|footnotesize)\\setlength\{\\tabcolsep\}\{[\d.]+pt\}",
                 lambda _: "\\footnotesize\\setlength{\\tabcolsep}{2.5pt}", tex, count=1)
    if wide:
        tex = tex.replace("\\begin{table}[htbp]", "\\begin{table*}[tbp]", 1).replace("\\end{table}", "\\end{table*}")
    return tex, " ".join(notes)


def fit_to_width(tex: str) -> str:
    """Set the table's outer tabular (the first `\\begin{tabular}` at a line's start and the last
    `\\end{tabular}`; cells may hold small tabulars of their own) in a box which, wider than the
    line, is scaled down to the line's width. Missing folds add `(k/10)` to cells and can widen a
    table past A4 (the synthesis table of a database with unfinished folds by ~130 pt). Scaling
    needs graphicx's \\resizebox (loaded by the report); without it, as in a document with booktabs
    alone, the box is set as it is."""
    start = re.search(r"^\\begin\{tabular\}", tex, re.M)
    end = tex.rfind("\\end{tabular}")
    if start is None or end < start.start():
        return tex
    end += len("\\end{tabular}")
    box = "\\fersnettablebox"
    use = f"\\usebox{{{box}}}"
    return (tex[:start.start()]
            + f"\\ifdefined{box}\\else\\newsavebox{{{box}}}\\fi\n\\sbox{{{box}}}{{%\n"
            + tex[start.start():end]
            + f"\n}}%\n\\ifdim\\wd{box}>\\linewidth\\ifdefined\\resizebox\\resizebox{{\\linewidth}}{{!}}{{{use}}}"
            + f"\\else{use}\\fi\\else{use}\\fi"
            + tex[end:])


def _fer_models(cfg: dict) -> list[str]:
    return catalog.fer_models(cfg["models"])


def _gen_models(cfg: dict) -> list[str]:
    return catalog.generators(cfg["models"])


def _n_seeds(cfg: dict) -> int:
    return len(agg.seeds_of(cfg))


def _multi(cfg: dict) -> bool:
    """Whether the grid repeats every fold with two or more training seeds (the tables then show the seed spread)."""
    return _n_seeds(cfg) >= 2


def _expected(cfg: dict) -> int:
    """Runs expected per (database, model): folds x seeds."""
    return cfg["n_folds"] * _n_seeds(cfg)


def _cell(cfg: dict, s: dict, decimals: int = 2, mark: str = "") -> str:
    return fmt_mean_std(s, _expected(cfg), decimals, seeds=_multi(cfg), mark=mark)


def _fold_note(cfg: dict) -> str:
    """What a mean $\\pm$ spread cell is; with one seed, the mean and std over folds."""
    n, n_seeds = cfg["n_folds"], _n_seeds(cfg)
    if n_seeds < 2:
        return (f"Mean $\\pm$ sample standard deviation (ddof={agg.STD_DDOF}) over the {n} "
                f"subject-independent test folds; ($k$/{n}): only $k$ folds finished; {DASH}: none.")
    runs = n * n_seeds
    return (f"Mean over the {runs} runs ({n} subject-independent test folds $\\times$ {n_seeds} training seeds) "
            f"$\\pm$ the fold spread: sample standard deviation (ddof={agg.STD_DDOF}) over the folds of each "
            f"fold's mean over its seeds; below it [in brackets] the seed spread: sample standard deviation over the "
            f"{n_seeds} seeds of each seed's mean over its folds, how much the mean moves with the training "
            f"seed ({DASH} when fewer than two seeds finished); ($k$/{runs}): only $k$ runs finished; "
            f"{DASH}: none.")


def _pairing(cfg: dict) -> str:
    """What the paired tests pair."""
    return ("over the folds both finished" if not _multi(cfg)
            else "over the runs both finished, paired by (fold, seed): each fold's run of one seed against "
                 "the other model's run of the same fold and seed")


def fer_accuracy(cfg: dict, col: agg.Collected) -> str:
    """Table 1: FER accuracy (%) per database of our re-run models, and the paper's reported block."""
    dbs = cfg["databases"]
    acc_head = f"Accuracy (\\%) {UP}"
    columns = pd.MultiIndex.from_tuples([("", "Pre-train"), ("", "Setting")]
                                        + [(acc_head, names.DATABASE[db]) for db in dbs])
    rows, values = [], []
    for model in _fer_models(cfg):
        s = [agg.accuracy_stats(col.folds, db, model) for db in dbs]
        rows.append((("Re-run", names.MODEL[model]), [NO, "single"] + [_cell(cfg, x) for x in s]))
        values.append([np.nan, np.nan] + [x["mean"] for x in s])
    for r in (r for r in published.REPORTED if any(db in r.accuracy for db in dbs)):
        cells = [r.accuracy.get(db, DASH) for db in dbs]          # as printed in the paper
        rows.append((("Reported", tex_escape(r.method)), [YES if r.pretrain else NO, r.setting] + cells))
        values.append([np.nan] * (2 + len(dbs)))
    index = pd.MultiIndex.from_tuples([r[0] for r in rows])
    display = pd.DataFrame([r[1] for r in rows], index=index, columns=columns)
    numeric = pd.DataFrame(values, index=index, columns=columns)
    bold = bold_mask(numeric)                       # only the re-run block has numbers to compare
    caption = ("FER accuracy per database. Re-run: this benchmark, best re-run model in bold. "
               + _fold_note(cfg) + " Reported: numbers published by " + published.SOURCE
               + ", copied as printed and \\emph{not re-run} here (different data: the real databases).")
    return render(display, caption, "tab:fer_accuracy", bold=bold, clines="skip-last;index")


IMBALANCE_METRICS = (("accuracy", f"Accuracy (\\%) {UP}"), ("balanced_accuracy", f"Balanced acc. (\\%) {UP}"),
                     ("macro_f1", f"Macro-F1 (\\%) {UP}"))


def fer_balanced(cfg: dict, col: agg.Collected) -> str | None:
    """Table 1b: accuracy beside balanced accuracy and macro-F1 (%), per database and FER model.

    The databases are imbalanced (CK+: 83 surprise, 18 contempt sequences), so a model can gain
    accuracy by favouring the large classes; balanced accuracy and macro-F1 weigh every class alike.
    """
    index, display, numeric = [], [], []
    for db in cfg["databases"]:
        for model in _fer_models(cfg):
            s = [agg.accuracy_stats(col.folds, db, model, key) for key, _ in IMBALANCE_METRICS]
            index.append((names.DATABASE[db], names.MODEL[model]))
            display.append([_cell(cfg, x) for x in s])
            numeric.append([x["mean"] for x in s])
    if not index:                 # no model with a FER branch in `models`
        return None
    columns = [head for _, head in IMBALANCE_METRICS]
    rows = pd.MultiIndex.from_tuples(index)
    display = pd.DataFrame(display, index=rows, columns=columns)
    numeric = pd.DataFrame(numeric, index=rows, columns=columns)
    # best model per database and metric, so bold never compares across databases
    bold = pd.concat([bold_mask(numeric.loc[[d]]) for d in dict.fromkeys(rows.get_level_values(0))])
    caption = ("FER accuracy, balanced accuracy and macro-F1 per database, best model per database in bold. "
               "Balanced accuracy: the mean recall over the classes of the test fold; macro-F1: the unweighted "
               "mean F1 over the classes; both computed with scikit-learn on each fold's test predictions. "
               + _fold_note(cfg))
    return render(display, caption, "tab:fer_balanced", bold=bold, clines="skip-last;index")


def ablation(cfg: dict, col: agg.Collected) -> tuple[str, dict]:
    """Table 2: the ablation with paired tests of FERSNet against each variant; also returns the tests."""
    dbs = cfg["databases"]
    models = _fer_models(cfg)
    cols = []
    for db in dbs:
        cols += [(names.DATABASE[db], f"Acc. (\\%) {UP}"), (names.DATABASE[db], "$p_W$"), (names.DATABASE[db], "$p_t$")]
    columns = pd.MultiIndex.from_tuples(cols)
    display = pd.DataFrame(DASH, index=[names.MODEL[m] for m in models], columns=columns)
    numeric = pd.DataFrame(np.nan, index=display.index, columns=columns)
    tests: dict = {}
    for db in dbs:
        d = names.DATABASE[db]
        ref = agg.run_values(col.folds, db, agg.REFERENCE)
        for model in models:
            row = names.MODEL[model]
            s = agg.accuracy_stats(col.folds, db, model)
            display.loc[row, (d, f"Acc. (\\%) {UP}")] = _cell(cfg, s)
            numeric.loc[row, (d, f"Acc. (\\%) {UP}")] = s["mean"]
            if model == agg.REFERENCE:
                display.loc[row, (d, "$p_W$")] = display.loc[row, (d, "$p_t$")] = "ref."
                continue
            t = agg.paired_tests(ref, agg.run_values(col.folds, db, model))
            tests[(db, model)] = t
            display.loc[row, (d, "$p_W$")] = fmt_p(t["p_wilcoxon"])
            display.loc[row, (d, "$p_t$")] = fmt_p(t["p_ttest"])
    unit = "folds" if not _multi(cfg) else "runs"
    caption = ("Ablation: FER accuracy of FERSNet and its variants, best in bold. " + _fold_note(cfg)
               + " $p_W$: Wilcoxon signed-rank, $p_t$: paired $t$-test, both two-sided, of FERSNet against "
               f"each variant {_pairing(cfg)} (scipy.stats; zero differences dropped; all-zero "
               f"differences give $p=1$; {DASH}: fewer than 2 paired {unit} or undefined)."
               + _no_convflu_caption(models)
               + _fes_da_caption(cfg, col, models))
    n = _expected(cfg)
    shared = ("the folds share training subjects, so they are not independent samples" if not _multi(cfg)
              else "the folds share training subjects and a fold's seeds share its test faces, so the runs are "
                   "not independent samples")
    note = (f"Caveat: {shared} and the "
            f"$p$-values are descriptive only. With {n} {unit} the exact two-sided Wilcoxon $p$ cannot fall "
            f"below $2/2^{{{n}}}\\approx {2 / 2 ** n:.3g}$.")
    augmentation = _augmentation_effect(cfg, col, models, tests)
    if augmentation:
        note = augmentation + " " + note
    # the two-line cells of several seeds: a smaller font keeps three databases inside A4
    small = dict(font="\\footnotesize", colsep="2.5pt") if _multi(cfg) else {}
    return render(display, caption, "tab:ablation", bold=bold_mask(numeric), note=note, **small), tests


def _no_convflu_caption(models: list[str]) -> str:
    """What w/o ConvFLU changes besides the exchange (docs/models.md, "Ablations")."""
    if "no_convflu" not in models:
        return ""
    return (f" {names.MODEL['no_convflu']}: hard parameter sharing, one trunk for levels 1--3 serving both "
            "tasks in place of FERSNet's two branches and their ConvFLUs; besides the exchange it therefore has "
            "one set of those levels instead of two (fewer parameters), normalised by BatchNorm where "
            "FERSNet's FES branch uses InstanceNorm.")


def _fes_da_caption(cfg: dict, col: agg.Collected, models: list[str]) -> str:
    """What FES-DA and its control trained on: synthetic and real faces per fold, per database."""
    if "fes_da" not in models and "fes_da_real" not in models:
        return ""
    per_class = cfg["fes_da"]["per_class"]
    budget = {"all_targets": "as many as every real training face rendered into each of the other "
                             "expressions of its database",
              "balance": "as many as top every class up to the largest"}.get(
        per_class, f"{per_class} per class on average")
    epochs, share = cfg["fes_da"]["epochs"], cfg["fes_da"].get("real_share")
    mix = (f"the real faces repeated to about {100 * share:.0f}\\% of the samples, at most what the balance "
           "allows" if share else "each real face once")
    text = (f" {names.MODEL['fes_da']}: the fold's FERSNet with its FER side fine-tuned for {epochs} "
            f"epoch{'' if epochs == 1 else 's'} on the real training faces and faces synthesized by its own "
            f"FES branch ({budget}; {mix}), every class of the set, real and synthetic faces together, "
            "holding the same number of samples.")
    counts = []
    for db in cfg["databases"]:
        syn = agg.run_values(col.folds, db, "fes_da", "n_train_synthetic")
        real = agg.run_values(col.folds, db, "fes_da", "n_train_real")
        if syn:
            counts.append(f"{names.DATABASE[db]} {np.mean(list(syn.values())):,.0f}"
                          + (f" (to {np.mean(list(real.values())):,.0f} real)" if real else ""))
    if counts:
        over = "folds" if not _multi(cfg) else "runs"
        text += f" Synthetic training faces per fold (mean over {over}): " + ", ".join(counts) + "."
    if "fes_da_real" in models:
        text += (f" {names.MODEL['fes_da_real']}: its control, the same FERSNet, epochs, learning rate and "
                 "number of steps, on the real training faces only (repeated to the size of the enlarged "
                 "set, keeping their class imbalance), so that the difference between the two is the "
                 "augmentation's effect, not that of the extra epochs.")
    return text


def _augmentation_effect(cfg: dict, col: agg.Collected, models: list[str], tests: dict) -> str:
    """FES-DA against its real-only control, paired over folds, per database (also into `tests`)."""
    if not {"fes_da", "fes_da_real"} <= set(models):
        return ""
    parts = []
    for db in cfg["databases"]:
        t = agg.paired_tests(agg.run_values(col.folds, db, "fes_da"), agg.run_values(col.folds, db, "fes_da_real"))
        tests[(db, "fes_da", "fes_da_real")] = t
        if t["n_pairs"]:
            parts.append(f"{names.DATABASE[db]} {signed(t['mean_diff'])} pp ($p_W$ {fmt_p(t['p_wilcoxon'])}, "
                         f"$p_t$ {fmt_p(t['p_ttest'])}, {t['n_pairs']} {'folds' if not _multi(cfg) else 'runs'})")
    if not parts:
        return ""
    return ("Augmentation effect, " + names.MODEL["fes_da"] + " minus " + names.MODEL["fes_da_real"]
            + f" {_pairing(cfg)}: " + "; ".join(parts) + ".")


def confusion(cfg: dict, col: agg.Collected, db: str, model: str = agg.REFERENCE) -> str | None:
    """Table 3: row-normalised confusion matrix (%) of (db, model) summed over folds; None when no fold."""
    counts, classes, used = agg.summed_confusion(col.folds, db, model)
    if counts is None or used == 0:
        return None
    pct = agg.row_normalised(counts)
    short = [names.EXPRESSION_SHORT.get(c, tex_escape(c)) for c in classes]
    full = [names.EXPRESSION.get(c, tex_escape(c)) for c in classes]
    display = pd.DataFrame([[f"{v:.1f}" for v in row] for row in pct], index=full,
                           columns=pd.MultiIndex.from_product([["Predicted (\\%)"], short]))
    bold = pd.DataFrame(np.eye(len(classes), dtype=bool), index=display.index, columns=display.columns)
    over = (f"{used}/{cfg['n_folds']} folds" if not _multi(cfg)
            else f"{used}/{_expected(cfg)} runs ({cfg['n_folds']} folds $\\times$ {_n_seeds(cfg)} seeds)")
    caption = (f"Confusion matrix of {names.MODEL[model]} on {names.DATABASE[db]}: rows are the true "
               f"expressions, each row in \\% of its {int(counts.sum())} test images summed over {over}; "
               "the diagonal (recall) in bold. "
               + ", ".join(f"{s}: {f}" for s, f in zip(short, full)) + ".")
    return render(display, caption, f"tab:confusion_{db}", bold=bold)


def _n_header(ns: set) -> str:
    ns = sorted(int(n) for n in ns if n is not None and n == n)
    return f" ($n$={'/'.join(map(str, ns))})" if ns else ""


def _fid_kid_cells(cfg: dict, pooled: dict | None, s: pd.DataFrame, db: str) -> dict:
    """FID and KID cells of one generator: pooled over folds when available (per seed, then the mean
    over seeds with the seed spread in brackets), else the mean over runs (dagger)."""
    n, multi = _expected(cfg), _multi(cfg)
    if pooled and pooled["fid"] is not None:
        k = pooled.get("n_folds_pooled")
        folds = f" ({k}/{n})" if k is not None and k < n else ""

        def cell(value: str, spread: float | None, decimals: int) -> str:
            # several seeds: the seed spread of the seeds' pooled values below, as in the other columns
            return stacked(value, seed_spread(spread, decimals) + folds) if multi else value + folds

        kid = DASH
        if pooled["kid"] is not None:
            kid = cell(f"{pooled['kid']:.4f}" + (rf" $\pm$ {pooled['kid_std']:.4f}" if pooled["kid_std"] is not None else ""),
                       pooled.get("kid_seed_std"), 4)
        return dict(fid=cell(f"{pooled['fid']:.2f}", pooled.get("fid_seed_std"), 2),
                    kid=kid, fid_val=pooled["fid"], fid_seed_std=pooled.get("fid_seed_std"),
                    kid_val=np.nan if pooled["kid"] is None else pooled["kid"],
                    fid_n={pooled["fid_n"]}, kid_n={pooled["kid_n"]}, dagger=False)
    fid = agg.run_values(s, db, None, "fid")
    if fid:
        f, k = agg.run_stats(fid), agg.run_stats(agg.run_values(s, db, None, "kid"))
        return dict(fid=_cell(cfg, f, mark=r"$^{\dagger}$"),
                    kid=_cell(cfg, k, 4, mark=r"$^{\dagger}$") if k["n"] else DASH,
                    fid_val=f["mean"], fid_seed_std=f["seed_std"], kid_val=k["mean"] if k["n"] else np.nan,
                    fid_n=set(s.fid_n.dropna()), kid_n=set(s.kid_n.dropna()), dagger=True)
    return dict(fid=DASH, kid=DASH, fid_val=np.nan, fid_seed_std=None, kid_val=np.nan, fid_n=set(), kid_n=set(),
                dagger=False)


def synthesis(cfg: dict, col: agg.Collected, db: str) -> tuple[str, dict]:
    """Table 4: synthesis quality of each generator on `db`; also returns the numbers for summary.json.

    Judge accuracy, judge FD, SSIM and PSNR are mean +- fold spread over the runs (scores.json;
    with several seeds, the seed spread in brackets). FID and KID come from the pooled file over
    all folds of a seed when `fersnet pool` wrote it (the better estimate: FID is biased by sample
    size), averaged over the seeds, otherwise mean +- fold spread over the runs, marked with a
    dagger. A scored generator without FID (no Inception weights) reads n/a with a footnote saying
    how to get them.
    """
    syn = col.synthesis[(col.synthesis.db == db) & (col.synthesis.status == "ok")]
    rows, numbers, reasons, losses = [], {}, [], {}
    fid_ns, kid_ns, jfd_ns, any_dagger = set(), set(), set(), False
    for model in _gen_models(cfg):
        s = syn[syn.model == model]
        judge, jfd, ssim, psnr = (agg.run_stats(agg.run_values(syn, db, model, key))
                                  for key in ("judge_accuracy", "judge_fd", "ssim", "psnr"))
        losses[model] = agg.synthesis_losses(cfg, col.folds, db, model)
        pooled = agg.pooled_over_seeds(col.pooled, db, model)
        c = _fid_kid_cells(cfg, pooled, s, db)
        fid_ns |= c["fid_n"]; kid_ns |= c["kid_n"]; jfd_ns |= set(s.judge_fd_n.dropna())
        any_dagger |= c["dagger"]
        reason = None
        if c["fid"] == DASH and not s.empty:
            # only a scored model can lack FID for want of Inception weights; an unscored one stays DASH
            reason = next(iter(s.fid_unavailable.dropna()), None) or (pooled or {}).get("fid_unavailable")
            if reason:
                reasons.append(reason)
                c["fid"] = c["kid"] = NA + "$^{a}$"
        rows.append((names.GENERATOR[model],
                     [_losses_cell(losses[model]), _cell(cfg, judge), c["fid"], c["kid"], _cell(cfg, jfd),
                      _cell(cfg, ssim, 3), _cell(cfg, psnr, 1)],
                     [np.nan, judge["mean"], c["fid_val"], c["kid_val"], jfd["mean"], ssim["mean"], psnr["mean"]]))
        numbers[model] = dict(judge_accuracy_mean=judge["mean"], judge_accuracy_std=judge["std"],
                              judge_accuracy_seed_std=judge["seed_std"], n_folds=judge["n_folds"],
                              n_runs=judge["n_runs"], seeds=sorted(judge["per_seed"]),
                              fid=c["fid_val"], fid_seed_std=c["fid_seed_std"], kid=c["kid_val"],
                              judge_fd_mean=jfd["mean"], judge_fd_std=jfd["std"], ssim_mean=ssim["mean"], ssim_std=ssim["std"],
                              psnr_mean=psnr["mean"], psnr_std=psnr["std"], losses=_losses_cell(losses[model]),
                              fid_unavailable=reason)
    n_generators = len(rows)
    for ref in agg.SYNTHESIS_REFERENCES:
        # what no synthesis and perfect synthesis score: shown, never compared (NaN in `numeric`)
        s = syn[syn.model == ref]
        if s.empty:
            continue
        judge, jfd, ssim, psnr = (agg.run_stats(agg.run_values(syn, db, ref, key))
                                  for key in ("judge_accuracy", "judge_fd", "ssim", "psnr"))
        c = _fid_kid_cells(cfg, agg.pooled_over_seeds(col.pooled, db, ref), s, db)
        any_dagger |= c["dagger"]
        if c["fid"] == DASH and reasons:
            c["fid"] = c["kid"] = NA + "$^{a}$"
        rows.append((f"\\emph{{{names.SYNTHESIS_REFERENCE[ref]}}}",
                     [DASH, _cell(cfg, judge), c["fid"], c["kid"], _cell(cfg, jfd), _cell(cfg, ssim, 3),
                      _cell(cfg, psnr, 1)], [np.nan] * 7))
        numbers[ref] = dict(judge_accuracy_mean=judge["mean"], judge_accuracy_std=judge["std"],
                            n_folds=judge["n_folds"], n_runs=judge["n_runs"], fid=c["fid_val"], kid=c["kid_val"],
                            judge_fd_mean=jfd["mean"], judge_fd_std=jfd["std"], ssim_mean=ssim["mean"],
                            ssim_std=ssim["std"], psnr_mean=psnr["mean"], psnr_std=psnr["std"])
    real = agg.run_stats(agg.run_values(col.judges, db, None))
    if real["n"]:
        # the judge on real test faces: the ceiling a perfect synthesis could reach
        rows.append(("\\emph{Real test faces}", [DASH, _cell(cfg, real)] + [DASH] * 5, [np.nan] * 7))
    # two header rows (name, then direction and sample size) keep the eight columns within A4
    columns = pd.MultiIndex.from_tuples([
        ("Losses", ""), ("Judge acc. (\\%)", UP), ("FID", DOWN + _n_header(fid_ns)),
        ("KID", DOWN + _n_header(kid_ns)), ("Judge FD", DOWN + _n_header(jfd_ns)), ("SSIM", UP), ("PSNR (dB)", UP)])
    index = [r[0] for r in rows]
    display = pd.DataFrame([r[1] for r in rows], index=index, columns=columns)
    numeric = pd.DataFrame([r[2] for r in rows], index=index, columns=columns)
    bold = pd.concat([bold_mask(numeric.iloc[:, [1, 5, 6]], "max"), bold_mask(numeric.iloc[:, [2, 3, 4]], "min")],
                     axis=1).reindex(columns=columns, fill_value=False)
    fid_ref = sorted({str(r) for r in syn.fid_reference.dropna()}) or [cfg["fid"]["reference"]]
    reference = {"test": "the fold's real test faces of that expression",
                 "train": "the fold's real training faces of that expression"}
    against = " / ".join(reference.get(r, tex_escape(r)) for r in fid_ref)
    caption = (f"Expression synthesis on {names.DATABASE[db]}: every test face into every other expression. "
               "Judge acc.: share of synthesized faces that the judge (a standard FER model trained on the "
               "fold's real training faces) classifies as the target expression. FID, KID and Judge FD are "
               "class-conditional: the faces synthesized towards each expression against " + against
               + " (never the source faces, which show another expression), then the mean over the expressions; "
               "a generator that only copies its input is far from every target. FID/KID: Inception features, "
               "pooled over all folds"
               + (" of a seed, then averaged over the seeds" if _multi(cfg) else "")
               + " ($n$: synthesized faces, the sample size in the metric's name; KID $\\pm$ std over subsets"
               + (", averaged over the seeds; below it [in brackets] the std over the seeds' pooled values" if _multi(cfg) else "")
               + "). Judge FD: Fr\\'echet distance on the judge's "
               "own features (domain-specific, per fold). SSIM, PSNR: against the subject's real image of "
               "the target expression; they reward keeping the input's identity, so copying scores high: read "
               "them against the reference rows. Best generator in bold. Reference rows, computed on every fold "
               "and never in bold: \\emph{Copy input}, the input face returned unchanged (no synthesis); "
               "\\emph{Real target}, the subject's real face of the target expression where it has one (perfect "
               "synthesis); \\emph{Real test faces}: the judge's accuracy on the real test faces, the ceiling for "
               "judge accuracy. " + _fold_note(cfg) + " " + _losses_caption(losses))
    notes = []
    # chance: one class in n, the classes the runs of this database recorded (metrics.json)
    recorded = [c for c in col.folds[col.folds.db == db].classes if isinstance(c, list) and c]
    untrained = _worse_than_copying(numbers, len(recorded[0])) if recorded else []
    if untrained:
        notes.append(", ".join(names.GENERATOR.get(m, names.MODEL.get(m, m)) for m in untrained)
                     + (" is" if len(untrained) == 1 else " are") + " farther from the target expressions than the "
                     "unchanged input (Judge FD above \\emph{Copy input}'s) and read by the judge at or below "
                     "chance: at this run's training length "
                     + ("it has" if len(untrained) == 1 else "they have") + " not learned to synthesize "
                     "faces, so " + ("its row compares" if len(untrained) == 1 else "their rows compare")
                     + " nothing (docs/training.md, \"Demo synthesis\").")
    if any_dagger:
        notes.append(r"$^{\dagger}$ No pooled file (\texttt{fersnet pool}): mean $\pm$ std of the per-fold values"
                     + (" (as the other columns, seed spread in brackets)." if _multi(cfg) else "."))
    if reasons:
        unique = list(dict.fromkeys(_shorten(r) for r in reasons))
        notes.append("$^{a}$ FID/KID unavailable: " + tex_escape(" ".join(unique[:2]))
                     + r" To compute them, set \texttt{fid.inception\_weights} in params.yaml to a local copy of "
                     r"\texttt{pt\_inception-2015-12-05-6726825d.pth}, or place that file in the torch hub cache "
                     r"(\texttt{torch.hub.get\_dir()/checkpoints/}); see docs/scoring.md.")
    tex = render(display, caption, f"tab:synthesis_{db}", bold=bold, note=" ".join(notes) or None,
                 column_format="lp{1.2cm}" + "c" * (len(columns) - 1), font="\\footnotesize", colsep="2.5pt")
    return _rule_before_row(tex, len(display), n_generators), numbers


def _worse_than_copying(numbers: dict, n_classes: int) -> list[str]:
    """The generators of a synthesis table that did no better than copying the input: a judge FD above
    the Copy input row's and a judge accuracy at or below chance (100 / n_classes %)."""
    copy = numbers.get("copy_input") or {}
    copy_fd, chance = copy.get("judge_fd_mean"), 100.0 / max(n_classes, 1)
    if not isinstance(copy_fd, float) or not math.isfinite(copy_fd):
        return []
    out = []
    for model, n in numbers.items():
        if model in agg.SYNTHESIS_REFERENCES:
            continue
        fd, acc = n.get("judge_fd_mean"), n.get("judge_accuracy_mean")
        if isinstance(fd, float) and isinstance(acc, float) and fd > copy_fd and acc <= chance:
            out.append(model)
    return out


def _rule_before_row(tex: str, n_rows: int, first: int) -> str:
    """A booktabs \\midrule between body row `first - 1` and row `first` (the generators and the
    reference rows of the synthesis table); nothing when `first` is 0 or past the last row."""
    if not 0 < first < n_rows:
        return tex
    lines = tex.split("\n")
    body = lines.index("\\midrule") + 1                 # the rule under the column header
    lines.insert(body + first, "\\midrule")
    return "\n".join(lines)


# Abbreviations of the losses column (fersnet.models.registry.synthesis_losses names them).
LOSS_NAMES = {"adv": "adversarial", "L1": "paired L1 to the real target face", "cyc": "cycle (MSE)",
              "rec": "cycle reconstruction (L1)", "id": "identity features",
              "expr": "expression loss through the model's FER branch (\\texttt{train.lambda\\_expr})",
              "cls": "StarGAN's domain classification by its own discriminator (\\texttt{stargan.lambda\\_cls})"}
TARGET_LOSSES = ("expr", "cls")


def _losses_cell(variants: list[tuple]) -> str:
    """`adv, L1, cyc, expr 0.3`: the losses of a generator's runs, the target signal with its weight;
    runs made with different losses are listed side by side (`/`)."""
    if not variants:
        return DASH
    cells = [", ".join(name + (f" {w:g}" if name in TARGET_LOSSES else "") for name, _, w in v) for v in variants]
    return " / ".join(cells)


def _losses_caption(losses: dict) -> str:
    """Which generators had a target signal, and whether those that can take the expression loss took
    it with the same weight (the comparison is then fair in that respect; otherwise the caption says not)."""
    used = {name for variants in losses.values() for v in variants for name, _, _ in v}
    legend = "; ".join(f"{k}: {LOSS_NAMES[k]}" for k in LOSS_NAMES if k in used)
    text = f"Losses that shaped each generator's synthesis ({legend})." if legend else ""
    can_take = {m: v for m, v in losses.items() if catalog.model(m).fer_branch and v}
    weights = {m: {dict((name, w) for name, _, w in variant).get("expr", 0.0) for variant in v}
               for m, v in can_take.items()}
    shown = ", ".join(names.GENERATOR[m] for m in can_take)
    flat = {w for ws in weights.values() for w in ws}
    if can_take and len(flat) == 1 and flat != {0.0}:
        text += (f" Every generator with a FER branch ({shown}) takes the expression loss with the same weight, "
                 f"{next(iter(flat)):g}")
    elif can_take and flat == {0.0}:
        text += f" No generator takes the expression loss (weight 0 for {shown})"
    elif can_take:
        text += (f" The generators with a FER branch ({shown}) took the expression loss with different weights "
                 "(see the column): their judge accuracies are not comparable with each other")
    others = [names.GENERATOR[m] for m in losses if m not in can_take and m != "stargan" and losses[m]]
    if can_take and others:
        text += f"; {', '.join(others)} has no FER branch to take it"
    if "stargan" in losses and losses["stargan"]:
        text += "; StarGAN is pushed to the target by its own discriminator's domain classification"
    if can_take:
        text += (". Judge accuracy therefore also reflects whether a generator had such a target signal, not only "
                 "its architecture; \\texttt{train.lambda\\_expr: 0} (the \\texttt{paper} profile) compares "
                 "the FERSNet generators without it.")
    return text.strip()


def _shorten(reason: str, limit: int = 200) -> str:
    """The first clause of a reason, without file paths in parentheses (long paths do not wrap in LaTeX)."""
    reason = re.sub(r"\s*\([^)]*[/\\][^)]*\)", "", str(reason))
    reason = re.sub(r"\s+", " ", reason.split(";")[0]).strip()
    reason = reason if len(reason) <= limit else reason[: limit - 3].rstrip() + "..."
    return reason if reason.endswith(".") else reason + "."


def protocol(cfg: dict, col: agg.Collected) -> str | None:
    """Table 5: selected (reported) accuracy beside the optimistic best-epoch-on-test accuracy and the gap;
    None when no model with a FER branch is in the grid (StarGAN alone)."""
    f = col.folds
    if not _fer_models(cfg):
        return None
    rows, index = [], []
    for db in cfg["databases"]:
        for model in _fer_models(cfg):
            sel = agg.run_values(f, db, model, "accuracy")
            best = agg.run_values(f, db, model, "best_epoch_test_accuracy")
            gap = {k: best[k] - sel[k] for k in set(sel) & set(best)}     # per run: (fold, seed)
            index.append((names.DATABASE[db], names.MODEL[model]))
            rows.append([_cell(cfg, agg.run_stats(v)) for v in (sel, best, gap)])
    selections = sorted({str(s) for s in f.selection.dropna()}) or ["last"]
    display = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index),
                           columns=["Selected (\\%)", "Best epoch on test (\\%)", "Gap (pp)"])
    caption = ("Protocol honesty: the accuracy we report beside that of the epoch best on the test fold, and "
               "the gap in percentage points. Reported: the model selected by \\texttt{train.selection} = "
               + ", ".join(tex_escape(s) for s in selections) + ", without looking at the test fold; best epoch: "
               "the epoch that happened to be best on the test fold (the optimistic selection some published code "
               "uses). " + _fold_note(cfg))
    return render(display, caption, "tab:protocol", clines="skip-last;index")


def completeness(cfg: dict, col: agg.Collected) -> str:
    """Finished runs per (model, database): what every other table is averaged over; with several
    seeds, the seeds that are not complete are named with their own count."""
    n, f = cfg["n_folds"], col.folds
    display = pd.DataFrame(index=[names.MODEL[m] for m in cfg["models"]],
                           columns=[names.DATABASE[db] for db in cfg["databases"]], dtype=object)
    for model in cfg["models"]:
        for db in cfg["databases"]:
            sel = f[(f.db == db) & (f.model == model)]
            cell = f"{int((sel.status == 'ok').sum())}/{len(sel)}"
            if _multi(cfg):
                short = [f"seed {seed}: {int((g.status == 'ok').sum())}/{n}"
                         for seed, g in sel.groupby("seed") if (g.status == "ok").sum() < n]
                if short and len(short) < _n_seeds(cfg):
                    cell += f" ({'; '.join(short)})"
            display.loc[names.MODEL[model], names.DATABASE[db]] = cell
    if _multi(cfg):
        caption = (f"Finished training jobs (runs with a usable metrics.json) of the {_expected(cfg)} expected per "
                   f"model and database ({n} folds $\\times$ {_n_seeds(cfg)} seeds: "
                   f"{', '.join(map(str, agg.seeds_of(cfg)))}), with the seeds that are not complete in "
                   "parentheses; the other tables average over these runs only.")
    else:
        caption = (f"Finished training jobs (folds with a usable metrics.json) of the {n} expected per model and "
                   "database; the other tables average over these folds only.")
    return render(display, caption, "tab:completeness")
