"""Figures of the report (matplotlib/seaborn, Agg backend): each function writes one PNG and returns
its path, or None when there is nothing to draw (the report then says so instead of an empty plot)."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fersnet import catalog, names, paths  # noqa: E402
from fersnet.reports import aggregate as agg  # noqa: E402

DPI = 130
# curves run against the fraction of each run's training, so that every run is behind every point
PROGRESS = "fraction of training (each run's epochs scaled to 1)"


def _save(fig, path: Path) -> Path:
    for ax in fig.axes:
        if ax.get_xlabel() == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            lo, hi = ax.get_xlim()
            if hi - lo < 1:                       # a single epoch: centre it
                mid = round((lo + hi) / 2)
                ax.set_xlim(mid - 1, mid + 1)
        elif ax.get_xlabel() == PROGRESS:
            ax.set_xlim(0, 1.03)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def as_percent(series: pd.Series) -> pd.Series:
    """history.csv accuracies in %, whether stored as fractions or percentages (see aggregate.to_percent)."""
    s = pd.to_numeric(series, errors="coerce")
    return s * 100.0 if s.dropna().le(1.0).all() else s


def _over(cfg: dict) -> str:
    """What the curves average over: the folds, or every fold of every seed."""
    return "folds" if len(agg.seeds_of(cfg)) < 2 else f"runs ({cfg['n_folds']} folds x {len(agg.seeds_of(cfg))} seeds)"


def fold_accuracy(cfg: dict, col: agg.Collected, path: Path) -> Path | None:
    """Per-run FER accuracy of each model: a box per model with every run (a fold of one seed) as a dot,
    one panel per database."""
    models = catalog.fer_models(cfg["models"])
    ok = col.folds[(col.folds.status == "ok") & col.folds.model.isin(models) & col.folds.accuracy.notna()]
    if ok.empty:
        return None
    data = ok.assign(Model=ok.model.map(dict(names.MODEL)), Database=ok.db.map(dict(names.DATABASE)))
    order = [names.MODEL[m] for m in models]
    dbs = [db for db in cfg["databases"]]
    fig, axes = plt.subplots(1, len(dbs), figsize=(3.2 * len(dbs), 3.4), squeeze=False, sharey=False)
    for ax, db in zip(axes[0], dbs):
        d = data[data.db == db]
        if d.empty:
            ax.text(0.5, 0.5, "no finished folds", ha="center", va="center", transform=ax.transAxes)
        else:
            with warnings.catch_warnings():   # seaborn 0.13 passes matplotlib 3.11's deprecated `vert`
                warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
                sns.boxplot(data=d, x="Model", y="accuracy", order=order, ax=ax, color="0.9", fliersize=0,
                            width=0.6)
            # seaborn jitters with numpy's global RNG: a fixed state (restored after) draws the same figure
            # from the same results
            state = np.random.get_state()
            np.random.seed(0)
            try:
                sns.stripplot(data=d, x="Model", y="accuracy", order=order, ax=ax, size=4, jitter=0.15,
                              hue="Model", hue_order=order, palette="deep", legend=False)
            finally:
                np.random.set_state(state)
        ax.set_title(names.DATABASE[db])
        ax.set_xlabel("")
        ax.set_ylabel("Test accuracy (%)")
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([o.replace("FERSNet ", "") for o in order], rotation=30, ha="right")
    fig.tight_layout()
    return _save(fig, path)


def _mean_band(ax, h: pd.DataFrame, column: str, label: str, percent: bool = False, **kw) -> int:
    """Mean over runs (folds, and seeds) against the fraction of training (aggregate.progress_curve,
    every run behind every point) with a min-max band; the number of runs, 0 when the column is absent."""
    if h.empty or column not in h.columns:
        return 0
    values = as_percent(h[column]) if percent else pd.to_numeric(h[column], errors="coerce")
    g = agg.progress_curve(h.assign(**{column: values}), column)
    if g.empty:
        return 0
    # markers keep a one-epoch run (test profile) visible
    line, = ax.plot(g["progress"], g["mean"], label=label, marker="o", markersize=2.5, **kw)
    ax.fill_between(g["progress"], g["min"], g["max"], alpha=0.15, color=line.get_color())
    return int(g["n_runs"].iloc[0])


def training_curves(cfg: dict, db: str, path: Path) -> Path | None:
    """Training and (diagnostic) test accuracy per epoch of every FER model, and FERSNet's losses."""
    models = catalog.fer_models(cfg["models"])
    histories = {m: agg.read_history(cfg, db, m) for m in models}
    if all(h.empty for h in histories.values()):
        return None
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    runs = set()
    for m, h in histories.items():
        runs.add(_mean_band(axes[0], h, "train_acc", names.MODEL[m], percent=True))
        runs.add(_mean_band(axes[1], h, "test_acc_diagnostic", names.MODEL[m], percent=True))
    ref = histories.get(agg.REFERENCE, pd.DataFrame())
    losses = [c for c in ref.columns if "/loss" in c]
    for c in losses:
        _mean_band(axes[2], ref, c, c)
    axes[0].set_title("Training accuracy (%)")
    axes[1].set_title("Test accuracy during training (%)\n(diagnostic, never used for selection)", fontsize=9)
    axes[2].set_title(f"{names.MODEL[agg.REFERENCE]} losses")
    for ax in axes:
        ax.set_xlabel(PROGRESS, fontsize=8)
        if ax.lines:
            ax.legend(fontsize=6)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    runs.discard(0)
    behind = f"{runs.pop()} runs" if len(runs) == 1 else "runs"
    fig.suptitle(f"{names.DATABASE[db]}: mean over {_over(cfg)} ({behind} behind every point), band = min-max",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def gate_means(cfg: dict, db: str, path: Path) -> Path | None:
    """FERSNet's mean ConvFLU gate values (history `gate/<dir>_<r|z>_l<level>`) per epoch, mean over runs."""
    h = agg.read_history(cfg, db, agg.REFERENCE)
    gates = sorted(c for c in h.columns if c.startswith("gate/"))
    if not gates:
        return None
    directions = sorted({c.split("/", 1)[1].split("_")[0] for c in gates})
    fig, axes = plt.subplots(1, len(directions), figsize=(4.2 * len(directions), 3.2), squeeze=False, sharey=True)
    for ax, direction in zip(axes[0], directions):
        own = [c for c in gates if c.split("/", 1)[1].startswith(direction + "_")]
        levels = sorted({c.rsplit("_", 1)[-1] for c in own})
        for c in own:
            kind, level = c.split("_")[1] if c.count("_") >= 2 else "", c.rsplit("_", 1)[-1]
            # one colour per level, solid = leaky gate r, dashed = memory gate z
            _mean_band(ax, h, c, c.split("/", 1)[1], linestyle="-" if kind == "r" else "--",
                       color=plt.cm.viridis(levels.index(level) / max(1, len(levels) - 1) * 0.85))
        ax.set_title(f"ConvFLU gates into the {direction.upper()} branch" if direction in ("fer", "fes")
                     else f"gates {direction}")
        ax.set_xlabel(PROGRESS, fontsize=8)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("mean gate value")
    fig.suptitle(f"{names.DATABASE[db]}: r = leaky gate (solid), z = memory gate (dashed)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def confusion_heatmap(cfg: dict, col: agg.Collected, db: str, path: Path,
                      model: str = agg.REFERENCE) -> Path | None:
    """Row-normalised confusion matrix (%) of (db, model) summed over runs, as a heatmap."""
    counts, classes, used = agg.summed_confusion(col.folds, db, model)
    if counts is None or used == 0:
        return None
    pct = agg.row_normalised(counts)
    labels = [names.EXPRESSION.get(c, c) for c in classes]
    fig, ax = plt.subplots(figsize=(0.75 * len(labels) + 1.8, 0.65 * len(labels) + 1.2))
    sns.heatmap(pd.DataFrame(pct, index=labels, columns=labels), annot=True, fmt=".1f", cmap="Blues",
                vmin=0, vmax=100, cbar_kws={"label": "% of true class"}, ax=ax, annot_kws={"size": 7})
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    n_seeds = len(agg.seeds_of(cfg))
    over = f"{used}/{cfg['n_folds']} folds" if n_seeds < 2 else f"{used}/{cfg['n_folds'] * n_seeds} runs"
    ax.set_title(f"{names.MODEL[model]} on {names.DATABASE[db]} ({over})", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def synthesis_grid(cfg: dict, db: str, path: Path, model: str = agg.REFERENCE) -> tuple[Path, int, int] | None:
    """Copy the synthesis grid of (db, model) fold 0 of the first seed (else the first run that has one,
    seed by seed); returns (path, fold, seed)."""
    for seed in agg.seeds_of(cfg):
        for k in range(cfg["n_folds"]):
            grid = paths.synthesis_dir(cfg, db, model, k, seed) / paths.SYNTH_GRID
            if grid.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(grid, path)
                return path, k, seed
    return None

