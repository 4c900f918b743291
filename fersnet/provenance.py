"""Provenance: one fingerprint per result, computed here and nowhere else (docs/architecture.md).

A result (a training run, a judge, a fold's scores, a pooled score, the report) is a function of
the params the job reads, the content of the files it reads (the processed data, and the
checkpoints a scoring job loads), the seed and the fold. `fingerprint()` hashes exactly those
parts; the readable parts are kept next to the hash so that a refusal can say what differs.

Left out of the hash, on purpose, are keys that only change where or how fast a job runs
(`RUNTIME_KEYS`), and the code version: results record the commit they were made with, and the
report flags tables that mix commits, but a new commit does not by itself invalidate results
(`--force`, `snakemake --forcerun`, `dvc repro -f` rebuild them).

This module imports neither torch nor pandas: the CLI checks a finished result before loading them.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from fersnet import catalog, paths
from fersnet.errors import FersnetError

PROVENANCE = "provenance.json"
PACKAGE = Path(__file__).resolve().parent

# Keys that change where or how fast a job runs, never what it computes. They are recorded in
# provenance.json (`runtime`) but left out of the fingerprint. The device is in the same class:
# the device a result was made on is recorded, not hashed (docs/architecture.md, "Fingerprint").
RUNTIME_KEYS = {
    "train": ("device", "threads", "checkpoint_every", "fused_adam", "compile", "compile_backend"),
    "fid": ("batch_size", "download", "require_inception"),
}

# The params each verb reads (top-level section -> keys, or None for the whole section).
# Model-specific sections are added by `job_params`. `data.<db>` and `preprocess` are not here:
# the processed data they produce is hashed by content (`data_hash`).
READS = {
    "train": {"seed": None, "n_folds": None, "model": None, "train": None},
    "judge": {"seed": None, "n_folds": None, "judge": None, "train": ("crop",)},
    "score": {"seed": None, "n_folds": None, "fid": None, "train": ("crop",)},
    "pool": {"seed": None, "n_folds": None, "fid": ("kid_subset", "kid_subsets", "dims")},
    "report": {"run_seeds": None, "n_folds": None, "databases": None, "models": None},
}


class StaleResult(FersnetError):
    """A finished result made from other inputs than the ones asked for now."""


# --- hashing ------------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    """sha256 of a file's content; computed once per process for an unchanged file (same inode,
    size and mtime), since a batched job fingerprints the same checkpoints and weights per fold."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    return KNOWN_HASHES.get(key) or _sha256_of(*key)


# Hashes of files known without reading them: (resolved path, inode, size, mtime_ns) -> hash, filled
# only for the duration of `known_hashes` (fersnet.status: a checkpoint not modified since a result
# recorded its hash is the file it read).
KNOWN_HASHES: dict = {}


class known_hashes:
    """`with known_hashes({path: hash}): ...`: file_sha256 answers these files' current state with
    the given hashes instead of reading them."""

    def __init__(self, hashes: dict):
        self.keys = []
        for path, value in hashes.items():
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
            KNOWN_HASHES[key] = value
            self.keys.append(key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for key in self.keys:
            KNOWN_HASHES.pop(key, None)
        return False


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, inode: int, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_files(files) -> str:
    """One sha256 over the names and contents of several files."""
    h = hashlib.sha256()
    for f in files:
        f = Path(f)
        h.update(f.name.encode() + b"\0" + file_sha256(f).encode() + b"\n")
    return h.hexdigest()


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_files(folder: Path) -> list[Path]:
    """The processed files every job reads: the images and their metadata (labels, folds)."""
    return [Path(folder) / paths.IMAGES, Path(folder) / paths.META]


def processed_hash(folder: Path) -> str:
    """Content hash of a processed database (written into summary.json by preprocess)."""
    return hash_files(data_files(folder))[:16]


def raw_manifest(root: Path) -> str:
    """A cheap hash of a database root as it is now: the relative path, size and mtime (ns) of
    every file under it, not their content (docs/decisions.md, "Raw data manifest").

    preprocess records it (summary.json `raw_manifest`); `fersnet status` and the workflow compare it
    with the root's manifest today, so replacing, adding or removing any file re-runs preprocess.
    Every file counts, hidden ones included (a reader may report them as passed over); linked
    folders are followed, each folder once (a link loop ends).
    """
    root = Path(root)
    h = hashlib.sha256()
    n = 0
    seen = set()                                          # linked folders are followed, each once
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for name in sorted(filenames):
            f = Path(dirpath) / name
            try:
                st = f.stat()
            except OSError:
                continue                                  # a dangling link: no file to read
            rel = f.relative_to(root).as_posix()
            h.update(rel.encode("utf-8", "surrogateescape") + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            n += 1
    return f"{n}:{h.hexdigest()[:16]}"


# --- what each job reads ------------------------------------------------------------------------
def _section(cfg: dict, name: str, keys) -> object:
    value = cfg[name]
    if isinstance(value, dict):
        drop = RUNTIME_KEYS.get(name, ())
        value = {k: v for k, v in value.items() if k not in drop and (keys is None or k in keys)}
    return value


def job_params(cfg: dict, verb: str, model: str | None = None) -> dict:
    """The params a job of `verb` (and `model`) reads, runtime-only keys removed.

    This is also what the workflow gives Snakemake as a rule's `params`, so that a change here
    re-plans exactly the jobs whose fingerprint changes.
    """
    reads = dict(READS[verb])
    if verb == "train":                 # a model's own sections (fes_da's control reads fes_da's settings)
        reads.update(dict.fromkeys(catalog.model(model).reads))
    out = {name: _section(cfg, name, keys) for name, keys in reads.items()}
    origin = catalog.model(model).origin if verb == "train" else None
    if origin:                          # an external model: its release and its code are inputs of its runs
        out["plugin"] = {"dist": origin.dist, "version": origin.version, "source": origin.source}
    return out


def flatten(tree, prefix: str = "", sep: str = ".") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1} (`sep` between the levels); an empty dict stays a value."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}{k}{sep}", sep) if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return {k.rstrip(sep): v for k, v in out.items()}


@dataclass
class Fingerprint:
    """The readable parts of a result's fingerprint and their hash."""
    verb: str
    job: dict
    params: dict
    data: dict = field(default_factory=dict)        # db -> processed data hash
    inputs: dict = field(default_factory=dict)      # file read -> sha256 (checkpoints, fold results)

    @property
    def parts(self) -> dict:
        return {"verb": self.verb, "job": self.job, "params": self.params, "data": self.data,
                "inputs": self.inputs}

    @property
    def digest(self) -> str:
        return digest(self.parts)


def data_state(cfg: dict, db: str) -> str:
    """The processed data's content hash, after checking that it was made with today's settings.

    preprocess records the settings it used (summary.json `protocol`) and the content hash; a job
    asked to run with other `data.<db>` / `preprocess` settings than the data was made with would
    train on one thing and report another, so that is an error naming the key.
    """
    folder = paths.processed_dir(cfg, db)
    summary_file = folder / paths.PREP_SUMMARY
    for f in [*data_files(folder), summary_file]:
        if not f.is_file():
            raise FersnetError(f"{f}: missing; run `fersnet preprocess --db {db}` first")
    try:
        summary = json.loads(summary_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FersnetError(f"{summary_file}: unreadable ({e}); re-run `fersnet preprocess --db {db}`") from None
    differ = data_settings_differ(cfg, db, summary)
    if differ:
        raise FersnetError(f"{folder} was made with other settings than params now give ({'; '.join(differ)}); "
                           f"re-run `fersnet preprocess --db {db}` (the workflow does this itself)")
    return summary.get("data_hash") or processed_hash(folder)


def data_settings_differ(cfg: dict, db: str, summary: dict) -> list[str]:
    """The `data.<db>` / `preprocess` / `n_folds` settings that differ between what the processed
    data was made with (summary.json `protocol`) and what params give now, as `key: old -> new`."""
    made_with = summary.get("protocol") or {}
    wanted = {**{f"data.{db}.{k}": v for k, v in cfg["data"][db].items()},
              **{f"preprocess.{k}": cfg["preprocess"][k] for k in ("size", "margin", "grayscale", "no_face")},
              "n_folds": cfg["n_folds"], "folds.rule": cfg["folds"]["rule"]}
    recorded = {**{f"data.{db}.{k}": made_with.get(k) for k in cfg["data"][db]},
                **{f"preprocess.{k}": made_with.get(k) for k in ("size", "margin", "grayscale", "no_face")},
                "n_folds": made_with.get("n_folds"),
                # data processed before `folds.rule` existed was cut round-robin (its `fold_rule` text says so)
                "folds.rule": made_with.get("folds_rule") or ("round_robin" if made_with.get("fold_rule") else None)}
    return [f"{k}: {recorded[k]!r} -> {wanted[k]!r}" for k in wanted
            if k in recorded and recorded[k] is not None and _norm(recorded[k]) != _norm(wanted[k])]


def _norm(value):
    if isinstance(value, str) and ("/" in value or value.startswith(".")):
        return str(Path(value).resolve())
    return value


def fingerprint(cfg: dict, verb: str, db: str, model: str | None = None, fold: int | None = None,
                inputs: dict | None = None) -> Fingerprint:
    """The fingerprint of one job: params it reads, its data, the files it reads, seed and fold."""
    job = {"db": db, "model": model, "fold": None if fold is None else int(fold)}
    files = {str(k): (file_sha256(Path(k))[:16] if v is None else v) for k, v in (inputs or {}).items()}
    data = {db: data_state(cfg, db)} if db else {}
    return Fingerprint(verb, job, flatten(job_params(cfg, verb, model)), data, files)


# --- code and environment -----------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """git commit and dirty flag where the package is a git checkout; always the package version
    and a hash of the package's sources (which tells two dirty trees apart)."""
    from importlib import metadata
    try:
        version = metadata.version("fersnet-bench")
    except metadata.PackageNotFoundError:
        version = None
    sources = sorted(PACKAGE.rglob("*.py"))
    h = hashlib.sha256()
    for f in sources:
        h.update(str(f.relative_to(PACKAGE)).encode() + b"\0" + f.read_bytes())
    out = {"git_commit": None, "dirty": None, "version": version, "source_hash": h.hexdigest()[:12]}
    root = PACKAGE.parent
    if (root / ".git").exists():
        try:
            head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
            # GIT_OPTIONAL_LOCKS=0: never take .git/index.lock, so a user's own git or DVC command
            # running beside the jobs is not blocked by them
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=20,
                                    env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
            if head.returncode == 0:
                out["git_commit"] = head.stdout.strip()
                out["dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def code_label(code: dict | None) -> str:
    """A short name for a code version: `4ead639`, `4ead639+dirty(src 1a2b3c4d5e6f)`, `0.1.0 (src ...)`."""
    if not code:
        return "unknown"
    if code.get("git_commit"):
        label = code["git_commit"][:7]
        return f"{label}+dirty(src {code.get('source_hash')})" if code.get("dirty") else label
    return f"{code.get('version') or '?'} (src {code.get('source_hash')})"


def environment(device: str | None = None) -> dict:
    """torch version, device and CPU instruction set: what can change floating-point results."""
    env = {"python": platform.python_version(), "platform": platform.platform(), "device": device}
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        try:
            env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        except (AttributeError, RuntimeError):
            env["cpu_capability"] = None
        if device and str(device).startswith("cuda") and torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name()
            env["cuda"] = torch.version.cuda
    return env


def runtime(cfg: dict) -> dict:
    """The runtime-only keys' values (recorded, not hashed)."""
    return {f"{s}.{k}": cfg[s][k] for s, keys in RUNTIME_KEYS.items() for k in keys if k in cfg.get(s, {})}


def record(fp: Fingerprint, cfg: dict, device: str | None = None) -> dict:
    """provenance.json's content for a result made now."""
    return {"fingerprint": fp.digest, **fp.parts, "code": code_version(), "environment": environment(device),
            "runtime": runtime(cfg), "profile": cfg.get("profile"),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def stamp(fp: Fingerprint) -> dict:
    """What a result file (metrics.json, scores.json) carries itself: the fingerprint and code version."""
    return {"fingerprint": fp.digest, "code_version": code_label(code_version())}


# --- reuse or refuse ----------------------------------------------------------------------------
def differences(old: dict, new: dict) -> list[str]:
    """What differs between two fingerprints' parts, in words a user can act on."""
    out = []
    oldp, newp = old.get("params", {}), new.get("params", {})
    for k in sorted(set(oldp) | set(newp)):
        if oldp.get(k, "<unset>") != newp.get(k, "<unset>"):
            out.append(f"{k}: {_show(oldp.get(k, '<unset>'))} -> {_show(newp.get(k, '<unset>'))}")
    for db in sorted(set(old.get("data", {})) | set(new.get("data", {}))):
        if old.get("data", {}).get(db) != new.get("data", {}).get(db):
            out.append(f"processed data of {db} changed")
    oldi, newi = old.get("inputs", {}), new.get("inputs", {})
    for f in sorted(set(oldi) | set(newi)):
        if oldi.get(f) != newi.get(f):
            out.append(f"input {f} changed" if f in oldi and f in newi else f"input {f} {'added' if f in newi else 'removed'}")
    if old.get("job") != new.get("job"):
        out.append(f"job {old.get('job')} -> {new.get('job')}")
    return out or ["the fingerprint differs"]


def _show(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else json.dumps(value) if not isinstance(value, str) else value


def reuse(done: Path, fp: Fingerprint, force: bool = False, log=None) -> dict | None:
    """A finished result made from exactly these inputs, or None when it must be (re)computed.

    `done` is the result file written last (metrics.json, scores.json). Same fingerprint: the
    result is returned (and the reuse said). Other fingerprint, or none recorded: StaleResult naming
    what differs, unless `force`, in which case None (the caller recomputes and replaces it).
    """
    done = Path(done)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if not done.is_file():
        return None
    try:
        result = json.loads(done.read_text())
    except (OSError, json.JSONDecodeError) as e:
        if force:
            return None
        raise StaleResult(f"{done}: unreadable ({e}); re-run with --force to recompute it") from None
    if result.get("fingerprint") == fp.digest:
        log(f"fersnet: reusing {done.parent} (fingerprint {fp.digest}: made from the same inputs)")
        return result
    if force:
        log(f"fersnet: --force: recomputing {done.parent}")
        return None
    prov_file = done.parent / PROVENANCE
    if result.get("fingerprint") is None or not prov_file.is_file():
        why = "it records no fingerprint (made by an older version of fersnet)"
    else:
        try:
            why = "; ".join(differences(json.loads(prov_file.read_text()), fp.parts))
        except (OSError, json.JSONDecodeError):
            why = f"{prov_file} is unreadable"
    raise StaleResult(f"{done.parent} holds a result made from other inputs ({why}); "
                      "re-run with --force to recompute it, or point paths.results elsewhere")


# --- what the report says about where its numbers came from -------------------------------------
def _read(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_stand_in(cfg: dict, db: str) -> bool:
    """Whether data.<db>.root is the synthetic stand-in (under synth.out) rather than a licensed copy."""
    root, synth = Path(cfg["data"][db]["root"]).resolve(), Path(cfg["synth"]["out"]).resolve()
    return root == synth / db or synth in root.parents


def results_provenance(cfg: dict) -> dict:
    """Code versions, environments and data behind the finished results of cfg's grid (every seed).

    `code`: code version -> {kind: number of results} (kind: training, judge, scores); `mixed` is
    true when the results come from more than one code version or from a dirty tree, or
    (`report_differs`) from another code version than the one building the report: a committed
    change re-runs nothing by itself, so the report must say that its numbers predate it.
    """
    kinds = {"training": [], "judge": [], "scores": []}
    for db in cfg["databases"]:
        for seed in cfg["run_seeds"]:
            for k in range(int(cfg["n_folds"])):
                kinds["judge"].append(paths.judge_dir(cfg, db, k, seed))
                for model in cfg["models"]:
                    kinds["training"].append(paths.run_dir(cfg, db, model, k, seed))
                    kinds["scores"].append(paths.synthesis_dir(cfg, db, model, k, seed))
    code: dict = {}
    env = {"torch": set(), "device": set(), "cpu_capability": set()}
    dirty = unrecorded = 0
    for kind, folders in kinds.items():
        for folder in folders:
            if not (folder / (paths.SCORES if kind == "scores" else paths.METRICS)).is_file():
                continue
            prov = _read(folder / PROVENANCE)
            label = code_label(prov.get("code")) if prov else "unrecorded"
            unrecorded += prov is None
            dirty += bool(prov and (prov.get("code") or {}).get("dirty"))
            code.setdefault(label, {}).setdefault(kind, 0)
            code[label][kind] += 1
            for key in env:
                value = (prov or {}).get("environment", {}).get(key)
                if value:
                    env[key].add(str(value))
    data = {}
    for db in cfg["databases"]:
        summary = _read(paths.processed_dir(cfg, db) / paths.PREP_SUMMARY) or {}
        data[db] = {"source": "stand-in" if is_stand_in(cfg, db) else "licensed copy",
                    "root": cfg["data"][db]["root"], "data_hash": summary.get("data_hash")}
    report_code = code_label(code_version())
    report_differs = bool(code) and set(code) != {report_code}
    return {"code": code, "mixed": len(code) > 1 or dirty > 0 or unrecorded > 0 or report_differs,
            "report_differs": report_differs, "dirty_results": dirty,
            "unrecorded_results": unrecorded, "data": data,
            **{k: sorted(v) for k, v in env.items()}, "report_code": report_code}
