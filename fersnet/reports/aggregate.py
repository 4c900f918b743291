"""Read the result files on disk (docs/architecture.md) and aggregate them over folds and seeds.

The report reads files only, never MLflow: `results/<db>/<model>/seed<s>/fold<k>/metrics.json`,
`history.csv`, `predictions.csv`, `synthesis/scores.json` and `seed<s>/synthesis_pooled.json`.
A run (one fold of one seed) whose metrics.json is absent, unreadable or lacks an accuracy is
*missing*: it is counted and shown as missing in every table, never silently averaged away.

Over the runs v[fold, seed] of one (database, model) (docs/reports.md, "Folds and seeds"):
the mean is over every usable run; the fold spread is the sample std over folds of each fold's
mean over its seeds (with one seed, the std over folds); the seed spread is the sample std over
seeds of each seed's mean over its folds (undefined, None, with fewer than two seeds); paired
tests pair runs by (fold, seed).
"""
from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from fersnet import catalog, paths
from fersnet.metrics.fold_stats import STD_DDOF, group_means, mean_std, run_stats  # noqa: F401 - the tables use them through here
from fersnet.models.registry import synthesis_losses as model_losses
from fersnet.training.classification import classification_metrics, labels_from_confusion

# The models' row orders (FER: catalog.fer_models, synthesis: catalog.generators) are the catalogue's.
# The synthesis table's reference rows (fersnet.metrics.score.REFERENCE_ROWS): what no synthesis (the
# input returned unchanged) and perfect synthesis (the subject's real target face) score on each fold.
SYNTHESIS_REFERENCES = ("copy_input", "real_target")
REFERENCE = catalog.REFERENCE        # the paired tests compare FERSNet against each ablation

# Wilcoxon signed-rank: zero differences are dropped (Wilcoxon's own rule, scipy's default);
# scipy picks the exact null distribution when it can and the normal approximation with ties.
WILCOXON_ZERO_METHOD = "wilcox"

# sized metric names (StyleGAN2-ADA style, docs/scoring.md): fid_n1536, kid_n1536, judge_fid_n1536
_METRIC_N = re.compile(r"^(fid|kid|judge_fid|judge_fd)_n(\d+)$")


@dataclass
class Problem:
    """A result file that exists but cannot be used; listed in the report and summary."""

    file: str
    reason: str


@dataclass
class Collected:
    """Everything the tables and figures need, read once from disk."""

    folds: pd.DataFrame                 # one row per expected (db, model, seed, fold); see collect_folds
    synthesis: pd.DataFrame             # one row per expected (db, generator, seed, fold); see collect_synthesis
    pooled: dict                        # (db, model, seed) -> parsed seed<s>/synthesis_pooled.json
    judges: pd.DataFrame                # one row per expected (db, seed, fold): judge accuracy on real faces
    problems: list = field(default_factory=list)


def warn(message: str) -> None:
    """A non-fatal problem, said on stderr (the report still builds and lists it)."""
    print(f"fersnet report: warning: {message}", file=sys.stderr)


def read_json(path: Path, problems: list) -> dict | None:
    """A JSON object from `path`, or None (with a Problem recorded) when it is absent or unusable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        problems.append(Problem(str(path), f"not valid JSON ({e})"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(str(path), "expected a JSON object"))
        return None
    return data


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def to_percent(value, confusion=None) -> float | None:
    """An accuracy as a percentage, whether the file stores a fraction or a percentage.

    The contract leaves the scale open. When the confusion matrix is there it decides
    (its trace/total is the fraction); otherwise a value <= 1 is read as a fraction, since an
    accuracy below 1 % is far below chance for 6-8 classes.
    """
    if not is_number(value):
        return None
    value = float(value)
    if confusion is not None:
        cm = np.asarray(confusion, dtype=float)
        if cm.ndim == 2 and cm.sum() > 0:
            frac = np.trace(cm) / cm.sum()
            if abs(value - frac) < 1e-6:
                return 100.0 * value
            if abs(value - 100.0 * frac) < 1e-4:
                return value
    return 100.0 * value if value <= 1.0 else value


def _nan_if_none(x):
    return np.nan if x is None else x


def _confusion(m: dict) -> np.ndarray | None:
    cm = m.get("confusion")
    try:
        arr = np.asarray(cm, dtype=float)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or not np.isfinite(arr).all():
        return None
    return arr


def read_fold(cfg: dict, db: str, model: str, fold: int, problems: list, seed: int = 0) -> dict:
    """One run's row (a fold of one seed): status ok / missing (no folder) / incomplete (no
    metrics.json) / failed."""
    run = paths.run_dir(cfg, db, model, fold, seed)
    row = dict(db=db, model=model, seed=int(seed), fold=fold, status="missing", accuracy=np.nan,
               balanced_accuracy=np.nan, macro_f1=np.nan, best_epoch_test_accuracy=np.nan, selected_epoch=np.nan, best_epoch=np.nan,
               n_test=np.nan, n_train_real=np.nan, n_train_synthetic=np.nan, selection=None, classes=None,
               confusion=None, run_dir=str(run))
    if not run.is_dir():
        return row
    metrics_path = run / paths.METRICS
    if not metrics_path.is_file():
        row["status"] = "incomplete"
        return row
    n_before = len(problems)
    m = read_json(metrics_path, problems)
    if m is None:
        row["status"] = "failed"
        return row
    cm = _confusion(m)
    acc = to_percent(m.get("accuracy"), cm)
    if model != "stargan" and acc is None:
        problems.append(Problem(str(metrics_path), f"`accuracy` is {m.get('accuracy')!r}; expected a number"))
    if len(problems) > n_before:
        row["status"] = "failed"
        return row
    classes = m.get("classes")
    balanced, macro_f1 = _imbalance_metrics(m, cm)
    row.update(status="ok", accuracy=np.nan if acc is None else acc,
               balanced_accuracy=balanced, macro_f1=macro_f1,
               best_epoch_test_accuracy=_nan_if_none(to_percent(m.get("best_epoch_test_accuracy"))),
               selected_epoch=m.get("selected_epoch") if is_number(m.get("selected_epoch")) else np.nan,
               best_epoch=m.get("best_epoch") if is_number(m.get("best_epoch")) else np.nan,
               n_test=m.get("n_test") if is_number(m.get("n_test")) else np.nan,
               **_training_set_sizes(m),
               selection=m.get("selection"),
               classes=list(classes) if isinstance(classes, list) else None,
               confusion=cm)
    return row


def _training_set_sizes(m: dict) -> dict:
    """Real and synthetic training faces of a job (FES-DA adds synthetic ones); results written
    before the top-level keys existed have them under `fes_da` or not at all (NaN)."""
    nested = m.get("fes_da") if isinstance(m.get("fes_da"), dict) else {}
    out = {}
    for key in ("n_train_real", "n_train_synthetic"):
        value = m.get(key, nested.get(key))
        out[key] = float(value) if is_number(value) else np.nan
    return out


def _imbalance_metrics(m: dict, confusion: np.ndarray | None) -> tuple[float, float]:
    """Balanced accuracy and macro-F1 (%) of a metrics.json; results written before these keys
    existed get them from their confusion matrix (same scikit-learn function). NaN when neither."""
    balanced, macro_f1 = to_percent(m.get("balanced_accuracy")), to_percent(m.get("macro_f1"))
    if (balanced is None or macro_f1 is None) and confusion is not None and confusion.sum() > 0:
        derived = classification_metrics(*labels_from_confusion(confusion), list(range(len(confusion))))
        balanced = 100.0 * derived["balanced_accuracy"] if balanced is None else balanced
        macro_f1 = 100.0 * derived["macro_f1"] if macro_f1 is None else macro_f1
    return _nan_if_none(balanced), _nan_if_none(macro_f1)


def seeds_of(cfg: dict) -> list[int]:
    """The training seeds of the grid (params `run_seeds`)."""
    return [int(s) for s in cfg["run_seeds"]]


def collect_folds(cfg: dict, problems: list) -> pd.DataFrame:
    """Every expected (database, model, seed, fold) of cfg, with its status and metrics (accuracy in %)."""
    rows = [read_fold(cfg, db, model, k, problems, seed)
            for db in cfg["databases"] for model in cfg["models"] for seed in seeds_of(cfg)
            for k in range(cfg["n_folds"])]
    return pd.DataFrame(rows)


def _metric_with_n(scores: dict, name: str) -> tuple[float | None, int | None, float | None]:
    """(value, n, std) of `fid_n<N>`/`kid_n<N>` in a scores dict; a value may be a number or {mean, std}."""
    for key, value in scores.items():
        match = _METRIC_N.match(str(key))
        if not match or match.group(1) != name:
            continue
        n = int(match.group(2))
        std = scores.get(f"{key}_std")
        if isinstance(value, dict):
            std = value.get("std", std)
            value = value.get("mean", value.get("value"))
        if is_number(value):
            return float(value), n, float(std) if is_number(std) else None
    # score.py also writes the plain key (`fid`, `kid`, `kid_std`) next to the sized one
    value, std = scores.get(name), scores.get(f"{name}_std")
    if is_number(value):
        return float(value), None, float(std) if is_number(std) else None
    return None, None, None


def parse_scores(scores: dict) -> dict:
    """The synthesis metrics the report uses, from a scores.json or synthesis_pooled.json dict."""
    fid, fid_n, _ = _metric_with_n(scores, "fid")
    kid, kid_n, kid_std = _metric_with_n(scores, "kid")
    jfd, jfd_n, _ = _metric_with_n(scores, "judge_fid")
    if jfd is None:                       # the scoring brief's spelling
        jfd, jfd_n, _ = _metric_with_n(scores, "judge_fd")
    reason = scores.get("fid_unavailable")
    folds = scores.get("folds")
    return dict(judge_accuracy=to_percent(scores.get("judge_accuracy")),
                fid=fid, fid_n=fid_n, kid=kid, kid_n=kid_n, kid_std=kid_std, judge_fd=jfd, judge_fd_n=jfd_n,
                n_folds_pooled=len(folds) if isinstance(folds, list) else None,
                ssim=float(scores["ssim"]) if is_number(scores.get("ssim")) else None,
                psnr=float(scores["psnr"]) if is_number(scores.get("psnr")) else None,
                n_pairs=scores.get("n_pairs") if is_number(scores.get("n_pairs")) else None,
                fid_unavailable=str(reason) if reason else None,
                fid_reference=scores.get("fid_reference"))


def collect_synthesis(cfg: dict, problems: list) -> pd.DataFrame:
    """One row per expected (database, generator, seed, fold) with its parsed scores.json (status ok/missing),
    then the reference rows (model `copy_input`, `real_target`) of every (database, seed, fold): each
    generator's scores.json holds the same ones, taken from the first generator scored.

    A scores.json made before FID/KID and judge FD became class-conditional (no `fid_reference`) is
    a problem, counted as missing: its numbers measure something else."""
    rows, refs = [], {}
    for db in cfg["databases"]:
        for model in catalog.generators(cfg["models"]):
            for seed in seeds_of(cfg):
                for k in range(cfg["n_folds"]):
                    path = paths.synthesis_dir(cfg, db, model, k, seed) / paths.SCORES
                    s = read_json(path, problems)
                    if s is not None and "fid_reference" not in s:
                        problems.append(Problem(str(path), "scored before FID/KID and judge FD became "
                                                "class-conditional (no `fid_reference`); re-run `fersnet score "
                                                f"--db {db} --model {model} --fold {k} --force`"))
                        s = None
                    row = dict(db=db, model=model, seed=seed, fold=k, status="ok" if s is not None else "missing")
                    row.update(parse_scores(s or {}))
                    rows.append(row)
                    if s is not None and isinstance(s.get("references"), dict):
                        refs.setdefault((db, seed, k), s["references"])
        for ref in SYNTHESIS_REFERENCES:
            for seed in seeds_of(cfg):
                for k in range(cfg["n_folds"]):
                    entry = (refs.get((db, seed, k)) or {}).get(ref)
                    row = dict(db=db, model=ref, seed=seed, fold=k,
                               status="ok" if isinstance(entry, dict) else "missing")
                    row.update(parse_scores(entry if isinstance(entry, dict) else {}))
                    rows.append(row)
    return pd.DataFrame(rows)


def collect_pooled(cfg: dict, problems: list) -> dict:
    """(db, model, seed) -> parsed pooled synthesis scores (paths.pooled_file), for the files that exist;
    the reference rows under (db, `copy_input` / `real_target`, seed), from the first generator's file."""
    out = {}
    for db in cfg["databases"]:
        for model in catalog.generators(cfg["models"]):
            for seed in seeds_of(cfg):
                data = read_json(paths.pooled_file(cfg, db, model, seed), problems)
                if data is not None:
                    out[(db, model, seed)] = parse_scores(data)
                    for ref, entry in (data.get("references") or {}).items():
                        if ref in SYNTHESIS_REFERENCES and isinstance(entry, dict) and (db, ref, seed) not in out:
                            out[(db, ref, seed)] = parse_scores(entry)
    return out


def pooled_over_seeds(pooled: dict, db: str, model: str) -> dict | None:
    """The pooled FID/KID of (db, model) as one entry: the mean over the seeds whose pooled file
    holds the metric, with `fid_seed_std`/`kid_seed_std` (ddof=1, None below two seeds), `seeds`
    (those seeds) and `n_folds_pooled` summed over them. KID's `kid_std` (over subsets) is the mean
    of the seeds' own. None when no seed has a pooled file. With one seed: that seed's entry as is."""
    per_seed = {seed: p for (d, m, seed), p in sorted(pooled.items(), key=lambda kv: kv[0][2])
                if d == db and m == model}
    if not per_seed:
        return None
    first = next(iter(per_seed.values()))
    out = dict(first)
    for name in ("fid", "kid", "kid_std"):
        values = [p[name] for p in per_seed.values() if p[name] is not None]
        out[name] = float(np.mean(values)) if values else None
        if name != "kid_std":
            spread = mean_std(values)["std"] if len(values) >= 2 else None
            out[f"{name}_seed_std"] = spread
    counts = [p["n_folds_pooled"] for p in per_seed.values()]
    out["n_folds_pooled"] = None if any(c is None for c in counts) else int(sum(counts))
    out["seeds"] = [seed for seed, p in per_seed.items() if p["fid"] is not None] or list(per_seed)
    out["fid_unavailable"] = next((p["fid_unavailable"] for p in per_seed.values() if p["fid_unavailable"]), None)
    return out


def collect_judges(cfg: dict, problems: list) -> pd.DataFrame:
    """The judge's accuracy (%) on the real test faces of every expected (database, seed, fold)."""
    rows = []
    for db in cfg["databases"]:
        for seed in seeds_of(cfg):
            for k in range(cfg["n_folds"]):
                m = read_json(paths.judge_dir(cfg, db, k, seed) / paths.METRICS, problems) or {}
                rows.append(dict(db=db, seed=seed, fold=k,
                                 accuracy=_nan_if_none(to_percent(m.get("accuracy"), _confusion(m)))))
    return pd.DataFrame(rows)


def collect(cfg: dict) -> Collected:
    """Read every result file the report uses; problems are warned about and kept in the result."""
    problems: list[Problem] = []
    folds = collect_folds(cfg, problems)
    synthesis = collect_synthesis(cfg, problems)
    pooled = collect_pooled(cfg, problems)
    judges = collect_judges(cfg, problems)
    for p in problems:
        warn(f"{p.file}: {p.reason}; counted as missing")
    return Collected(folds, synthesis, pooled, judges, problems)


def run_values(frame: pd.DataFrame, db: str, model: str | None, column: str = "accuracy") -> dict:
    """(fold, seed) -> value of the usable runs of (db, model) in `frame` (Collected.folds or
    .synthesis; model None: the rows of `db`, as in Collected.judges, which has no status)."""
    sel = frame[frame.db == db]
    if model is not None:
        sel = sel[sel.model == model]
    if "status" in sel.columns:
        sel = sel[sel.status == "ok"]
    out = {}
    for fold, seed, value in zip(sel.fold, sel.seed, sel[column]):
        value = pd.to_numeric(value, errors="coerce")
        if value is not None and np.isfinite(value):
            out[(int(fold), int(seed))] = float(value)
    return out


def fold_values(folds: pd.DataFrame, db: str, model: str, column: str = "accuracy") -> dict:
    """fold -> mean over seeds of the usable runs of that fold of (db, model): the values the fold
    spread is the std of (with one seed, each fold's value)."""
    return group_means(run_values(folds, db, model, column), 0)


def seed_values(folds: pd.DataFrame, db: str, model: str, column: str = "accuracy") -> dict:
    """seed -> mean over folds of the usable runs of that seed of (db, model): the values the seed
    spread is the std of."""
    return group_means(run_values(folds, db, model, column), 1)


def accuracy_stats(folds: pd.DataFrame, db: str, model: str, column: str = "accuracy") -> dict:
    """run_stats of one (db, model) column over its usable runs (mean, fold std, seed std, counts)."""
    return run_stats(run_values(folds, db, model, column))


def paired_tests(reference: dict, other: dict) -> dict:
    """Paired Wilcoxon signed-rank and paired t-test of `reference` vs `other` over their common keys:
    the (fold, seed) runs both finished (run_values), so a fold's seeds are paired seed by seed.

    Folds share training subjects, and a fold's seeds share its test faces, so the runs are not
    independent samples: the p-values are a descriptive guide, not a formal test (see
    docs/reports.md). With 10 pairs the exact two-sided Wilcoxon p cannot go below 2/2^10 ~ 0.002.
    All-zero differences give p = 1 (no evidence of a difference); a t-test on constant non-zero
    differences is undefined (NaN).
    """
    common = sorted(set(reference) & set(other))
    x = np.array([reference[k] for k in common])
    y = np.array([other[k] for k in common])
    out = dict(n_pairs=len(common), p_wilcoxon=math.nan, p_ttest=math.nan,
               mean_diff=float((x - y).mean()) if common else math.nan)
    if len(common) < 2:
        return out
    d = x - y
    if np.allclose(d, 0.0):
        out.update(p_wilcoxon=1.0, p_ttest=1.0)
        return out
    out["p_wilcoxon"] = float(stats.wilcoxon(x, y, zero_method=WILCOXON_ZERO_METHOD).pvalue)
    if np.ptp(d) > 0:
        out["p_ttest"] = float(stats.ttest_rel(x, y).pvalue)
    return out


def synthesis_losses(cfg: dict, folds: pd.DataFrame, db: str, model: str) -> list[list[tuple]]:
    """The distinct loss lists (fersnet.models.registry.synthesis_losses) that the finished runs
    of (db, model) were trained with, read from each run's config.json; today's params where no
    run recorded its config. Usually one list; more when folds were trained with other weights."""
    variants: list[list[tuple]] = []
    sel = folds[(folds.db == db) & (folds.model == model) & (folds.status == "ok")]
    for r in sel.itertuples():
        run_cfg = read_json(Path(r.run_dir) / paths.CONFIG, [])
        try:
            losses = model_losses(model, run_cfg) if run_cfg else None
        except (KeyError, TypeError):          # a config.json of an older layout
            losses = None
        if losses is not None and losses not in variants:
            variants.append(losses)
    return variants or [model_losses(model, cfg)]


def summed_confusion(folds: pd.DataFrame, db: str, model: str) -> tuple[np.ndarray | None, list, int]:
    """Confusion counts of (db, model) summed over its usable runs (every fold of every seed) with the
    same classes: (counts, classes, runs used)."""
    sel = folds[(folds.db == db) & (folds.model == model) & (folds.status == "ok")]
    total, classes, used = None, None, 0
    for r in sel.itertuples():
        if r.confusion is None:
            continue
        cls = r.classes or [str(i) for i in range(len(r.confusion))]
        if total is None:
            total, classes = np.zeros_like(r.confusion), cls
        if cls != classes or r.confusion.shape != total.shape:
            warn(f"{r.run_dir}: classes differ from the other runs; left out of the confusion matrix")
            continue
        total = total + r.confusion
        used += 1
    return total, classes or [], used


def row_normalised(counts: np.ndarray) -> np.ndarray:
    """Rows (true classes) as % of their total; an empty row stays 0."""
    sums = counts.sum(axis=1, keepdims=True)
    return np.divide(100.0 * counts, sums, out=np.zeros_like(counts, dtype=float), where=sums > 0)


def _read_csv(path: Path, columns: set[str], consequence: str) -> pd.DataFrame | None:
    """A result CSV with the needed columns, or None after a warning that says what is left out."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as e:
        warn(f"{path}: unreadable ({e}); {consequence}")
        return None
    missing = sorted(columns - set(frame.columns))
    if missing:
        warn(f"{path}: no column {', '.join(f'`{c}`' for c in missing)}; {consequence}")
        return None
    return frame


def read_history(cfg: dict, db: str, model: str) -> pd.DataFrame:
    """Every run's history.csv of (db, model) (all folds of all seeds) stacked, with `seed` and
    `fold` columns (empty if none)."""
    frames = []
    for seed in seeds_of(cfg):
        for k in range(cfg["n_folds"]):
            path = paths.run_dir(cfg, db, model, k, seed) / paths.HISTORY
            if not path.is_file():
                continue
            h = _read_csv(path, {"epoch"}, "left out of the curves")
            if h is not None:
                frames.append(h.assign(seed=seed, fold=k))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def progress_curve(h: pd.DataFrame, column: str) -> pd.DataFrame:
    """`column` of stacked histories (read_history) against the fraction of training done, with every
    run behind every point: runs of different lengths (epochs follow `train.min_steps` and the fold's
    size) are each put on the fraction scale (epoch / the run's last epoch) and interpolated at the
    ends of the shortest run's epochs. Columns `progress` (0-1], `mean`, `min`, `max`, `n_runs`;
    empty when no run logged the column. (Averaging per epoch instead would end the curve on the few
    longest runs alone.)"""
    out = pd.DataFrame(columns=["progress", "mean", "min", "max", "n_runs"])
    if h.empty or column not in h.columns:
        return out
    runs = []
    for _, run in h.groupby(["seed", "fold"]):
        run = run.assign(value=pd.to_numeric(run[column], errors="coerce")).dropna(subset=["value"])
        run = run.sort_values("epoch")
        if not run.empty:
            runs.append((run["epoch"].to_numpy(float) / float(run["epoch"].max()), run["value"].to_numpy(float)))
    if not runs:
        return out
    n_points = min(len(x) for x, _ in runs)
    grid = np.arange(1, n_points + 1) / n_points
    values = np.stack([np.interp(grid, x, y) for x, y in runs])
    return pd.DataFrame({"progress": grid, "mean": values.mean(0), "min": values.min(0), "max": values.max(0),
                         "n_runs": len(runs)})


def prediction_pairs(cfg: dict, folds: pd.DataFrame, db: str, model: str = REFERENCE) -> pd.DataFrame:
    """`actual,predicted` class names of every test prediction of (db, model), over its usable runs
    (every fold of every seed)."""
    frames = []
    sel = folds[(folds.db == db) & (folds.model == model) & (folds.status == "ok")]
    for r in sel.itertuples():
        path = Path(r.run_dir) / paths.PREDICTIONS
        if not path.is_file():
            warn(f"{path}: missing; run left out of the confusion plot data")
            continue
        p = _read_csv(path, {"true", "pred"}, "run left out of the confusion plot data")
        if p is None:
            continue
        frames.append(pd.DataFrame({"actual": [_class_name(v, r.classes) for v in p["true"]],
                                    "predicted": [_class_name(v, r.classes) for v in p["pred"]]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["actual", "predicted"])


def _class_name(value, classes) -> str:
    """A label index mapped to its class name (values that are already names pass through)."""
    try:
        i = int(value)
    except (TypeError, ValueError):
        return str(value)
    return classes[i] if classes and 0 <= i < len(classes) else str(i)
