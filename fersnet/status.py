"""Which results on disk are current: `fersnet status`, the workflow's check before it plans, the report.

A result is *current* when the fingerprint recorded with it (provenance.json, metrics.json,
scores.json; summary.json for the processed data) is the one that today's params, data and
upstream results imply, computed by the same code the job itself uses (fersnet.provenance and the
jobs' own fingerprint functions), and every result it reads is current too. Otherwise it is
*stale*, for one or more reasons:

- params: a setting the job reads differs (a `--force` run with `--set`, an edited params.yaml);
- data: what it reads differs: the raw files under the database root (their manifest), the
  processed data, or an upstream result (checkpoint) it was made from, or that upstream is stale;
- code: made by another code version than the one running now (not a fingerprint part: a new
  commit alone re-runs nothing; `snakemake --forcerun` rebuilds it).

A result whose file is not there is *missing*. docs/architecture.md, "What current means".
Also here: the check that stops a run of one params profile over another profile's outputs.
No torch or pandas imports: the workflow runs this at every start.
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from fersnet import catalog, ownership, paths, provenance
from fersnet.config import with_seed
from fersnet.errors import FersnetError

CURRENT, STALE, MISSING = "current", "stale", "missing"
REASONS = ("params", "data", "code")


@dataclass
class Result:
    """One expected result of the grid and its state."""
    kind: str                   # preprocess, train, judge, score
    db: str
    model: str | None = None
    seed: int | None = None
    fold: int | None = None
    done: Path | None = None    # the file written last (the workflow's output of the job)
    state: str = MISSING
    reasons: list[str] = field(default_factory=list)
    why: str = ""

    @property
    def label(self) -> str:
        if self.kind == "preprocess":
            return f"preprocess {self.db}"
        return f"{self.kind} {paths.run_label(self.db, self.model, self.fold, self.seed)}"

    @property
    def command(self) -> str:
        """The command that re-makes this result."""
        if self.kind == "preprocess":
            return f"fersnet preprocess --db {self.db}"
        model = f" --model {self.model}" if self.kind in ("train", "score") else ""
        return f"fersnet {self.kind} --db {self.db}{model} --fold {self.fold} --seed {self.seed} --force"

    @property
    def remake(self) -> bool:
        """Stale in what it is made from (params, data): the workflow re-makes it."""
        return self.state == STALE and bool({"params", "data"} & set(self.reasons))

    def as_dict(self) -> dict:
        return {"result": self.label, "state": self.state, "reasons": self.reasons, "why": self.why,
                "file": str(self.done), "command": self.command}


# --- what the grid holds ------------------------------------------------------------------------
def expected(cfg: dict, databases=None) -> list[Result]:
    """Every result the workflow's `all` target makes for cfg's grid (the target lists of
    workflow/rules/common.smk), upstream before downstream: per database its processed data, then
    per seed and fold each model's training run, the judge and each scored generator's scores."""
    out = []
    for db in databases or cfg["databases"]:
        out.append(Result("preprocess", db, done=paths.processed_dir(cfg, db) / paths.PREP_SUMMARY))
        for seed in cfg["run_seeds"]:
            for k in range(int(cfg["n_folds"])):
                models = sorted(cfg["models"], key=lambda m: m in catalog.fine_tuned())   # what they fine-tune first
                for model in models:
                    out.append(Result("train", db, model, int(seed), k, paths.run_dir(cfg, db, model, k, seed) / paths.DONE))
                out.append(Result("judge", db, "judge", int(seed), k, paths.judge_dir(cfg, db, k, seed) / paths.DONE))
                for model in cfg["models"]:
                    if model in catalog.generators():
                        out.append(Result("score", db, model, int(seed), k,
                                          paths.synthesis_dir(cfg, db, model, k, seed) / paths.SCORES))
    return out


def _read(path: Path) -> dict | None:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# --- the processed data ---------------------------------------------------------------------------
def _check_processed(cfg: dict, r: Result, code_now: str) -> None:
    folder = r.done.parent
    if not all((folder / f).is_file() for f in (paths.IMAGES, paths.META, paths.PREP_SUMMARY)):
        return                                                    # missing
    summary = _read(r.done)
    if summary is None:
        r.state, r.reasons, r.why = STALE, ["data"], f"{r.done} is unreadable"
        return
    reasons, why = [], []
    differ = provenance.data_settings_differ(cfg, r.db, summary)
    if differ:
        reasons.append("params")
        why.append("; ".join(differ))
    root = paths.raw_dir(cfg, r.db)
    recorded = summary.get("raw_manifest")
    if not root.is_dir():
        reasons.append("data")
        why.append(f"the database root {root} is missing")
    elif recorded is not None and recorded != provenance.raw_manifest(root):
        reasons.append("data")
        why.append(f"files under {root} changed since it was processed")
    if not reasons and summary.get("code_version") and summary["code_version"] != code_now:
        reasons.append("code")
        why.append(f"made by {summary['code_version']}, the code now is {code_now}")
    if reasons:
        r.state, r.reasons, r.why = STALE, reasons, "; ".join(why)
    else:
        r.state = CURRENT


# --- training runs, judges, scores -------------------------------------------------------------
def fingerprint_of(cfg: dict, r: Result) -> provenance.Fingerprint:
    """The fingerprint today's params and files imply for `r`: the job's own function."""
    cfg = with_seed(cfg, r.seed)
    if r.kind == "train":
        from fersnet.training.train import fingerprint
        return fingerprint(cfg, r.db, r.model, r.fold)
    if r.kind == "judge":
        return provenance.fingerprint(cfg, "judge", r.db, "judge", r.fold)      # as fersnet.metrics.judge
    from fersnet.metrics.score import score_fingerprint
    return score_fingerprint(cfg, r.db, r.model, r.fold)


def _upstream(r: Result, index: dict) -> list[Result]:
    """The results `r` reads: a fine-tuned model's source run (FES-DA's and its control's fersnet run),
    a score's run and judge."""
    key = (r.db, r.seed, r.fold)
    if r.kind == "train" and r.model in catalog.fine_tuned():
        return [x for x in [index.get(("train", catalog.model(r.model).fine_tunes, *key))] if x]
    if r.kind == "score":
        return [x for x in [index.get(("train", r.model, *key)), index.get(("judge", "judge", *key))] if x]
    return []


def _unchanged_inputs(r: Result, old: dict | None) -> dict:
    """The recorded hashes of the files `r` read (checkpoints) that were not modified after `r`'s done
    file was written: those are the files it read, so they are not read again to be hashed (a
    paper-scale grid's checkpoints are gigabytes, and the workflow runs this at every start). A
    checkpoint replaced since (a re-made run) is newer, and is hashed."""
    inputs = (old or {}).get("inputs") or {}
    try:
        made = r.done.stat().st_mtime_ns
    except OSError:
        return {}
    out = {}
    for path, value in inputs.items():
        try:
            if isinstance(value, str) and os.stat(path).st_mtime_ns <= made:
                out[path] = value
        except OSError:
            continue
    return out


def _reasons(old: dict | None, fp: provenance.Fingerprint) -> list[str]:
    if not old:
        return ["params", "data"]                       # nothing recorded: nothing can be trusted
    new = fp.parts
    out = []
    if any(old.get(k) != new[k] for k in ("params", "job", "verb")):
        out.append("params")
    if any(old.get(k) != new[k] for k in ("data", "inputs")):
        out.append("data")
    return out or ["params"]


def _check_job(cfg: dict, r: Result, data: Result, index: dict, code_now: str) -> None:
    if not r.done.is_file():
        return                                                    # missing
    result = _read(r.done) or {}
    if data.remake or data.state == MISSING:
        r.state, r.reasons = STALE, ["data"]
        r.why = f"the processed data of {r.db} is {data.state}" + (f" ({', '.join(data.reasons)})" if data.reasons else "")
        return
    old = _read(r.done.parent / provenance.PROVENANCE)
    try:
        with provenance.known_hashes(_unchanged_inputs(r, old)):
            fp = fingerprint_of(cfg, r)
    except FersnetError as e:
        r.state, r.reasons, r.why = STALE, ["data"], str(e)
        return
    if result.get("fingerprint") != fp.digest:
        r.state, r.reasons = STALE, _reasons(old, fp)
        r.why = "; ".join(provenance.differences(old, fp.parts)) if old else "no fingerprint recorded"
        return
    stale_up = [u for u in _upstream(r, index) if u.remake]
    if stale_up:
        r.state, r.reasons = STALE, ["data"]
        r.why = "reads " + ", ".join(u.label for u in stale_up) + ", which is stale"
        return
    made_by = result.get("code_version")
    if made_by and made_by != code_now:
        r.state, r.reasons, r.why = STALE, ["code"], f"made by {made_by}, the code now is {code_now}"
        return
    r.state = CURRENT


def check(cfg: dict, databases=None) -> list[Result]:
    """Every expected result of cfg's grid with its state (current / stale / missing)."""
    code_now = provenance.code_label(provenance.code_version())
    results = expected(cfg, databases)
    index = {(r.kind, r.model, r.db, r.seed, r.fold): r for r in results if r.kind != "preprocess"}
    data = {}
    for r in results:                     # upstream before downstream (expected's order)
        if r.kind == "preprocess":
            _check_processed(cfg, r, code_now)
            data[r.db] = r
        else:
            _check_job(cfg, r, data[r.db], index, code_now)
    return results


def summary_line(results: list[Result]) -> str:
    """`12 results: 9 current, 2 stale (params 1, data 1), 1 missing`."""
    n = {s: sum(r.state == s for r in results) for s in (CURRENT, STALE, MISSING)}
    why = ", ".join(f"{reason} {c}" for reason in REASONS
                    if (c := sum(reason in r.reasons for r in results if r.state == STALE)))
    return (f"{len(results)} results: {n[CURRENT]} current, {n[STALE]} stale"
            + (f" ({why})" if why else "") + f", {n[MISSING]} missing")


def render(results: list[Result], show_all: bool = True) -> str:
    lines = []
    for r in results:
        if r.state == CURRENT and not show_all:
            continue
        state = f"{r.state} ({', '.join(r.reasons)})" if r.reasons else r.state
        line = f"{state:<22} {r.label}"
        if r.state == STALE:
            line += f": {r.why}" + (f"; re-make: {r.command}" if r.remake else "")
        lines.append(line)
    return "\n".join(lines + [summary_line(results)])


def main(cfg: dict, args) -> None:
    """`fersnet status`: each result's state and a summary line; exit 0 whatever the states."""
    results = check(cfg, getattr(args, "db", None))
    if getattr(args, "json", False):
        print(json.dumps({"results": [r.as_dict() for r in results], "summary": summary_line(results)}, indent=2))
    else:
        print(render(results, show_all=not getattr(args, "stale_only", False)))


# --- the workflow's check before it plans -----------------------------------------------------
# Which kinds of result a workflow target rule makes; any other target (all, a database rule, a file)
# may reach every kind.
RULE_KINDS = {"all_folds": {"preprocess", "train", "judge"}}


def _reads(t: Result, r: Result) -> bool:
    """Whether result `t` is made from result `r` (directly or not)."""
    if r.db != t.db:
        return False
    if r.kind == "preprocess":
        return t.kind != "preprocess"
    if (r.seed, r.fold) != (t.seed, t.fold):
        return False
    if t.kind == "score":
        return r.kind == "judge" or (r.kind == "train" and r.model == t.model)
    return (t.kind == "train" and t.model in catalog.fine_tuned() and r.kind == "train"
            and r.model == catalog.model(t.model).fine_tunes)


def reached(r: Result, targets, databases, grid=()) -> bool:
    """Whether a Snakemake run of `targets` can need result `r`. A file target that is a result of
    `grid` needs that result and what it is made from; another file (a pooled score, a processed
    file) or a database rule (ckplus) needs that database's results; `all_folds` makes no scores;
    no target or any other rule (all, all_scores) needs everything."""
    if not targets:
        return True
    by_file = {str(x.done): x for x in grid}
    for t in map(str, targets):
        if t in by_file:
            if by_file[t].label == r.label or _reads(by_file[t], r):
                return True
            continue
        dbs = [db for db in databases if db == t or db in Path(t).parts]
        if dbs and r.db not in dbs:
            continue
        if r.kind in RULE_KINDS.get(t, {r.kind}):
            return True
    return False


def workflow_forcerun(cfg: dict, stale: list[Result], targets) -> tuple[list[str], str | None]:
    """The done files of `stale` results a Snakemake run of `targets` must re-make (Snakemake's
    `--forcerun` files: each job re-runs, and so does everything that reads it), and a message naming
    each with why; ([], None) when there is none. docs/decisions.md, "Stale results are re-made"."""
    grid = expected(cfg) if targets else ()
    chosen = [r for r in stale if reached(r, targets, cfg["databases"], grid)]
    if not chosen:
        return [], None
    lines = [f"fersnet: {len(chosen)} result(s) on disk are not what params.yaml and the data make now; "
             "re-making them (and what reads them):"]
    lines += [f"  {r.label}: {r.why}" for r in chosen]
    return [str(r.done) for r in chosen], "\n".join(lines)


def stale_for_workflow(cfg: dict) -> list[Result]:
    """The results a workflow run re-makes although Snakemake would keep them: those whose
    fingerprint is not the one params.yaml and the data imply now (made by hand with other params,
    from data or raw files changed since, or by a CLI run that escaped Snakemake's own records).
    Code-only staleness is not among them: a new commit re-runs nothing by itself."""
    return [r for r in check(cfg) if r.remake]


def not_current(cfg: dict) -> list[dict]:
    """The finished results of cfg's grid whose fingerprint is not the current one (the report's
    warning box): label and why. Code-only staleness is the mixed-code box's business."""
    try:
        results = check(cfg)
    except FersnetError as e:
        return [{"result": "all results", "why": str(e)}]
    return [{"result": r.label, "why": r.why} for r in results if r.remake]


# --- outputs of another profile ----------------------------------------------------------------
# Every profile writes to the same folders (dvc.yaml fixes the paths), and data and results are not
# cached: a run of one profile over another's outputs would replace them for good. So a run that would
# write stops first, naming them (docs/decisions.md, "One profile per project folder").
REPORT_SUMMARY = "summary.json"      # fersnet.reports.contents.SUMMARY (not imported: pandas)


def _profile_of(record) -> str | None:
    value = record.get("profile") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def recorded_profile(path) -> str | None:
    """The params profile an output was made under, as the output records it: a training run's,
    judge's or scored synthesis's provenance.json, the processed data's or the report's summary.json,
    the stand-in's folder marker, a pooled score file's own provenance. None when it records none
    (not there, or made by a fersnet version that did not record it)."""
    path = Path(path)
    if path.is_file():
        record = _read(path) or {}
        return _profile_of(record) or _profile_of(record.get("provenance"))
    if not path.is_dir():
        return None
    for name in dict.fromkeys((provenance.PROVENANCE, paths.PREP_SUMMARY, REPORT_SUMMARY, ownership.MARKER)):
        found = _profile_of(_read(path / name))
        if found:
            return found
    return None


def grid_outputs(cfg: dict, databases=None) -> list[Path]:
    """What a run of cfg's grid writes, per database: the stand-in (when it is the database's root),
    the processed data, every training run, judge and scored synthesis folder, the pooled scores;
    then the report's folder."""
    out = []
    for db in databases or cfg["databases"]:
        if paths.raw_dir(cfg, db).resolve() == paths.synth_dir(cfg, db).resolve():
            out.append(paths.synth_dir(cfg, db))
        out += [r.done.parent for r in expected(cfg, [db])]
        out += [paths.pooled_file(cfg, db, model, seed) for model in catalog.generators(cfg["models"])
                for seed in cfg["run_seeds"]]
    return out + [paths.reports_dir(cfg)]


def other_profile(cfg: dict, outputs) -> list[tuple[Path, str]]:
    """(output, the profile it was made under) for each of `outputs` made under another profile
    than cfg's."""
    found = []
    for path in outputs:
        made = recorded_profile(path)
        if made and made != cfg["profile"]:
            found.append((Path(path), made))
    return found


def other_profile_message(cfg: dict, found: list[tuple[Path, str]]) -> str:
    """One paragraph: which profile made the outputs, which one was asked for, the first few outputs
    and their count, and the ways out."""
    asked = cfg["profile"]
    made = sorted({m for _, m in found})
    shown = ", ".join(str(p) for p, _ in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    results = Path(cfg["paths"]["results"])
    tops = []                                    # what to remove: results/<db> rather than each run
    for p, _ in found:
        top = results / p.relative_to(results).parts[0] if results in p.parents else p
        if top not in tops:
            tops.append(top)
    which = f"profile{'s' if len(made) > 1 else ''} {' and '.join(made)}"
    remove = " ".join(shlex.quote(str(t)) for t in tops)
    return (f"profile {asked} was asked for, but the folders it writes hold {len(found)} output(s) made under "
            f"{which} ({shown}); nothing was changed. Every profile writes to the same folders, so run profile "
            f"{asked} in its own copy of the project (`git worktree add ../fersnet-{asked}`, then run it there), "
            f"or as a DVC experiment outside this folder (`dvc exp run --temp -S profile={asked}`), or remove "
            f"the other profile's outputs first (`rm -r {remove}`).")


def databases_reached(targets, databases) -> list[str]:
    """The databases a Snakemake run of `targets` writes: those a target names (a database rule, a
    file under a database's folder), or all of them when a target names none (all, all_folds, ...)."""
    chosen = []
    for t in map(str, targets or ()):
        dbs = [db for db in databases if db == t or db in Path(t).parts]
        if not dbs:
            return list(databases)
        chosen += [db for db in dbs if db not in chosen]
    return chosen or list(databases)


def workflow_profile_clash(cfg: dict, targets) -> str | None:
    """The workflow's check before its first job: the message that stops a run of cfg's profile over
    outputs of another profile, among those of the databases its targets reach and the report; None
    when there are none."""
    found = other_profile(cfg, grid_outputs(cfg, databases_reached(targets, cfg["databases"])))
    return "fersnet: " + other_profile_message(cfg, found) if found else None


# --- one writer per result folder ---------------------------------------------------------------
def lock_file(folder) -> Path:
    """`<parent>/.<name>.lock`: beside the folder, so that replacing the folder keeps the lock."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


class writer_lock:
    """Hold the writer lock of a result folder for a job's lifetime; a second writer (a CLI run
    beside a workflow job of the same fold) is refused at once, naming the folder.

    An fcntl lock on `lock_file(folder)`, removed on release (while still held, so that a writer
    that opened the old file sees it gone and tries again); a killed holder's lock is released by
    the kernel and its file is taken over by the next writer.
    """

    def __init__(self, folder, who: str, made_by: str | None = None):
        """`made_by` (fersnet.ownership.step): the step that marks the folders above the result
        the lock has to create, as the job itself would mark them; None: left unmarked."""
        self.folder, self.who, self.made_by = Path(folder), who, made_by
        self.path = lock_file(folder)
        self._fd = None

    def __enter__(self):
        import fcntl
        if self.made_by:
            ownership.create_dirs(self.path.parent, self.made_by)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise FersnetError(f"{self.folder} is being written by another fersnet job now (it holds "
                                   f"{self.path}); {self.who} refused: wait for that job to end, then run "
                                   "again") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return self
            os.close(fd)                  # removed by the writer that held it: take the new file

    def __exit__(self, *exc):
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        return False
