"""Which folders fersnet may replace or delete, and what a killed run can leave behind.

Ownership: every folder fersnet creates carries a small marker file, `.fersnet` (what made
it, when). What made it is a step: a verb and what it was run on (`step`), e.g.
`fersnet train ckplus/fersnet/seed0/fold0`. A command replaces or deletes only a folder that
is empty or carries the marker of the same step; any other folder, a folder made by another
step included, stops it with an error that names the folder and what made it
(docs/architecture.md, "Ownership and crashes").

Safe writes: every output is written by one of two primitives here, so that a kill at any
moment leaves the old complete output or the new one, never part of one: `write_bytes`,
`write_text` and `write_json` for a file (a temporary sibling, fsync, rename), `build_aside` for
a folder (built in a marked staging sibling, then swapped in whole). Their temporaries have one
name pattern, `.<name>.tmp-<pid>-<host>-<random>` (or `.old-`, `temp_name`); `clean_temps`
removes those whose process is no longer running; every verb calls it over the folders it
works in.

This module imports only the standard library: the CLI and the Snakefile use it at start.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from fersnet.errors import FersnetError, writing

MARKER = ".fersnet"
PAUSE_ENV = "FERSNET_PAUSE_AT"      # debugging aid for crash tests (pause_point)
PAUSE_SECONDS_ENV = "FERSNET_PAUSE_S"
# A temporary made on another machine (shared file system) cannot be checked for a live
# process: it is removed once it is this old.
STALE_S = 24 * 3600
HOW = "pick another --out, or empty it"

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-(?P<host>[0-9a-f]{6})-[0-9a-f]+$")


class ForeignFolder(FersnetError):
    """A folder fersnet would have to replace or write into, but did not create."""


# The verbs whose folders carry markers; a marker's `made_by` starts with "fersnet <verb>".
VERBS = ("synth", "preprocess", "train", "judge", "score", "pool", "report", "track", "workflow")
_MADE_BY = re.compile(r"^fersnet (?P<verb>[a-z-]+)(?: (?P<of>[^ ()]+))?(?: \(.*\))?$")


def step(verb: str, *of) -> str:
    """What makes a folder, as its marker records it: `fersnet <verb>` and what the verb was run
    on, e.g. step("train", "ckplus", "fersnet", "seed0", "fold0") is
    "fersnet train ckplus/fersnet/seed0/fold0", step("report") is "fersnet report"."""
    if verb not in VERBS:
        raise ValueError(f"unknown step verb {verb!r}")
    return " ".join(["fersnet", verb] + (["/".join(str(p) for p in of)] if of else []))


def parse_step(made_by) -> tuple[str, str | None] | None:
    """(verb, what it was run on or None) of a marker's `made_by`; None when it names no known
    step (a marker cut short by a kill, or written by hand)."""
    m = _MADE_BY.match(made_by) if isinstance(made_by, str) else None
    if m is None or m["verb"] not in VERBS:
        return None
    return m["verb"], m["of"]


def same_step(found, wanted: str) -> bool:
    """True when a folder whose marker says `found` may be replaced by the step `wanted`: the
    same verb on the same thing. A marker of a fersnet version from before markers named what the
    verb was run on (`fersnet train`) matches every step of its verb."""
    a, b = parse_step(found), parse_step(wanted)
    if a is None or b is None or a[0] != b[0]:
        return False
    return a[1] is None or a[1] == b[1]


def mark(folder, made_by: str, profile: str | None = None) -> None:
    """Write the marker into `folder`, a folder fersnet created: what made it (a `step`) and when,
    and the params profile it was made under where the folder records nothing else (the stand-in).

    Written in place, not through a temporary: a kill while writing leaves a short marker,
    which still marks the folder (`owned` looks only for the file; `check_replaceable` replaces
    a folder with a short marker only when nothing else is in it).
    """
    record = {"made_by": made_by, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "host": socket.gethostname(), "pid": os.getpid(), **({"profile": profile} if profile else {})}
    (Path(folder) / MARKER).write_text(json.dumps(record) + "\n")


def owned(folder) -> bool:
    """True when `folder` carries fersnet's marker."""
    return (Path(folder) / MARKER).is_file()


def maker(folder) -> str | None:
    """The `made_by` of `folder`'s marker; None when it has no readable one."""
    try:
        record = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    value = record.get("made_by") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def _entries(folder: Path, n: int = 3) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _holds_no_files(folder: Path, but=()) -> bool:
    """True when no file lies anywhere under `folder` (other than its own files named in `but`):
    it is empty, or holds only empty folders."""
    return all((p.is_dir() and not p.is_symlink()) or (p.parent == folder and p.name in but)
               for p in folder.rglob("*"))


def check_replaceable(folder, made_by: str, how: str = HOW) -> None:
    """Refuse (ForeignFolder) when `folder` exists, holds a file, and was not made by the step
    `made_by` (see `step`): it carries no marker, or the marker of another step.

    A tree of empty folders holds nothing to lose: Snakemake makes the folders of a job's
    declared outputs (reports/figures/, reports/tables/) before the job starts; so does a folder
    whose only file is a marker that names no step (cut short by a kill right after the folder
    was made). `how` tells the researcher how to proceed; it ends the message.
    """
    folder = Path(folder)
    if folder.is_symlink():
        raise ForeignFolder(f"{folder}: is a symbolic link; fersnet writes its outputs to real folders "
                            f"only, so nothing was changed; {how}")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ForeignFolder(f"{folder}: exists and is not a folder; nothing was changed; {how}")
    if _holds_no_files(folder):
        return
    if not owned(folder):
        raise ForeignFolder(f"{folder}: holds files fersnet did not create ({_entries(folder)}; no {MARKER} "
                            f"marker), so it is neither replaced nor written into; {how}")
    found = maker(folder)
    if same_step(found, made_by):
        return
    if found is None or parse_step(found) is None:
        if _holds_no_files(folder, but=(MARKER,)):
            return
        what = f"its {MARKER} marker does not say which step made it" + (f" ({found!r})" if found else "")
    else:
        what = f"it is the output of `{found}`, another step"
    raise ForeignFolder(f"{folder}: {what}, so `{made_by}` neither replaces nor deletes it; "
                        f"nothing was changed; {how}")


def check_data_roots(cfg: dict, target, verb: str) -> None:
    """Refuse to replace or write into `target` when it is, holds or lies inside a configured
    `data.<db>.root` that is not a marked stand-in: a licensed copy is never modified."""
    t = Path(target).resolve()
    for db, entry in cfg["data"].items():
        if not isinstance(entry, dict) or not entry.get("root"):
            continue
        root = Path(entry["root"])
        if not root.exists() or owned(root):
            continue
        r = root.resolve()
        if r == t or t in r.parents or r in t.parents:
            where = "is" if r == t else ("holds" if t in r.parents else "lies inside")
            raise ForeignFolder(
                f"{target}: {where} the configured database root data.{db}.root = {root}, which carries no "
                f"{MARKER} marker (it may be a licensed copy), so {verb} neither writes into nor deletes "
                f"from it; pick another --out, or point data.{db}.root elsewhere. A stand-in written by "
                "an older fersnet has no marker: delete it and run `fersnet synth` again")


def adopt_earlier(folder, names, required, made_by: str) -> bool:
    """Mark `folder` when it holds only files named in `names`, all of `required` among them:
    a complete output of a fersnet version from before folders carried markers. True if marked."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink() or owned(folder):
        return False
    found = {p.name for p in folder.iterdir()}
    if not set(required) <= found or any(n not in names and _parse(n) is None for n in found):
        return False
    mark(folder, f"{made_by} (taken over: written by an earlier fersnet version)")
    return True


def create_dirs(folder, made_by: str) -> Path:
    """`mkdir -p` with normal permissions (the umask applies, unlike tempfile.mkdtemp's 0700);
    every folder created here is marked. Existing folders are left as they are."""
    folder = Path(folder)
    missing = []
    p = folder
    while not p.exists() and not p.is_symlink() and p != p.parent:
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        try:
            p.mkdir()
        except FileExistsError:
            continue                   # made at the same moment by another job: its marker
        mark(p, made_by)
    return folder


def claim_folder(folder, made_by: str, how: str = HOW) -> Path:
    """A folder to write into: created (marked) when missing, marked when empty, kept when
    made by the same step `made_by`; a folder holding anything else is refused (ForeignFolder)."""
    folder = Path(folder)
    check_replaceable(folder, made_by, how)
    create_dirs(folder, made_by)
    if not same_step(maker(folder), made_by):      # unmarked, or a marker cut short by a kill
        mark(folder, made_by)
    return folder


def temp_name(name: str, kind: str = "tmp") -> str:
    """`.<name>.<kind>-<pid>-<host>-<random>`: the one pattern of fersnet's temporaries."""
    return f".{name}.{kind}-{os.getpid()}-{_HOST}-{secrets.token_hex(3)}"


def temp_path(path) -> Path:
    """A temporary sibling of the file `path`, to write and then rename onto it."""
    path = Path(path)
    return path.with_name(temp_name(path.name))


def make_temp_dir(parent, name: str, made_by: str) -> Path:
    """A new marked staging folder `.<name>.tmp-...` in `parent` (created, marked, as needed)."""
    create_dirs(parent, made_by)
    while True:
        tmp = Path(parent) / temp_name(name)
        try:
            tmp.mkdir()
        except FileExistsError:
            continue
        mark(tmp, made_by)
        return tmp


def pause_point(name: str) -> None:
    """With FERSNET_PAUSE_AT=<name> (comma-separated names allowed), stop here for
    FERSNET_PAUSE_S seconds (default 600): a debugging aid to kill a command at an exact point."""
    wanted = os.environ.get(PAUSE_ENV)
    if wanted and name in wanted.split(","):
        print(f"fersnet: paused at {name} ({PAUSE_ENV})", file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get(PAUSE_SECONDS_ENV, 600)))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
        return False                   # file system or kernel without the flag
    raise OSError(err, os.strerror(err), str(b))


def swap_in(staging, final, made_by: str, how: str = HOW) -> None:
    """Install the fully written folder `staging` as `final` (absent, empty, or made by the
    same step `made_by`; `check_replaceable`).

    The old `final` stays complete until the new one is in place. On Linux the two are
    exchanged in one step; elsewhere the old one is first renamed to `.<name>.old-...`, and
    `clean_temps` puts it back should the process die before the new one is in place.
    """
    staging, final = Path(staging), Path(final)
    check_replaceable(final, made_by, how)
    if not same_step(maker(staging), made_by):
        mark(staging, made_by)
    pause_point(f"swap:{final.name}")
    if not final.exists():
        os.rename(staging, final)
        return
    if _exchange(staging, final):
        leftover = staging             # now holds the old folder
    else:
        leftover = final.with_name(temp_name(final.name, "old"))
        os.rename(final, leftover)
        os.rename(staging, final)
    pause_point(f"swapped:{final.name}")
    shutil.rmtree(leftover, ignore_errors=True)


# --- safe writes: the one way fersnet writes an output file or folder ----------------------------
def write_bytes(path, data: bytes, made_by: str | None = None) -> None:
    """Write the file `path` so that a reader, a kill or a power cut finds the old file or the
    new one, never part of one: `data` goes to a temporary sibling (`temp_path`), is forced to
    disk (fsync), is renamed over `path`, and the rename is forced to disk too (fsync of the folder).

    With `made_by` (a `step`), the folders above `path` are created (and marked) as needed;
    without it they must exist. A full disk is one line naming the folder (errors.DiskFull). The
    temporary is removed on every way out; a killed process's is removed by `clean_temps`.
    """
    path = Path(path)
    with writing(path.parent):
        if made_by is not None:
            create_dirs(path.parent, made_by)
        tmp = temp_path(path)
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            pause_point(f"write:{path.name}")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _sync_folder(path.parent)


def write_text(path, text: str, made_by: str | None = None) -> None:
    """`write_bytes` of `text` in UTF-8."""
    write_bytes(path, text.encode(), made_by)


def write_json(path, obj, made_by: str | None = None, *, allow_nan: bool = True) -> None:
    """`write_text` of `obj` as JSON, indented by 2, keys in their order, with a final newline;
    `allow_nan=False` refuses NaN and infinities (ValueError) instead of writing `NaN`."""
    write_text(path, json.dumps(obj, indent=2, allow_nan=allow_nan) + "\n", made_by)


def _sync_folder(folder: Path) -> None:
    """fsync a folder, which makes a rename in it durable; a file system that cannot is let be."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EPERM, errno.EACCES):
            raise
    finally:
        os.close(fd)


@contextmanager
def build_aside(final, made_by: str, how: str = HOW, done: str | None = None):
    """Build the folder `final` aside and install it whole: yields a new marked staging sibling
    (`.<name>.tmp-...`, `make_temp_dir`) to write into. When the block ends without an error
    (and, given `done`, with the file `done` written in the staging folder), the staging folder
    is swapped in for `final` (`swap_in`); otherwise it is removed and `final` stays as it was.

    `final` must be absent, empty, or made by the same step `made_by`: any other folder is
    refused before any work (`check_replaceable`, ForeignFolder; `how` ends the message). A full
    disk is one line naming `final`, never its staging copy (errors.DiskFull).

    The files written into the staging folder are not forced to disk one by one (a stand-in is
    thousands of files): the swap guards against a kill, not against a power cut in the seconds
    after it (docs/decisions.md, "Safe writes").
    """
    final = Path(final)
    check_replaceable(final, made_by, how)
    with writing(final):
        tmp = make_temp_dir(final.parent, final.name, made_by)
        try:
            yield tmp
            if done is None or (tmp / done).is_file():
                swap_in(tmp, final, made_by, how)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _parse(name: str):
    """(name, kind, pid, host) of a temporary's file name (`temp_name`), or None."""
    m = _TEMP.match(name)
    return (m["name"], m["kind"], int(m["pid"]), m["host"]) if m else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                    # another user's process
    except (OverflowError, ValueError):
        return False
    return True


def _in_use(path: Path, pid: int, host: str) -> bool:
    if host != _HOST:
        try:
            return time.time() - path.lstat().st_mtime < STALE_S
        except FileNotFoundError:
            return False
    return _alive(pid)


def _ours(path: Path) -> bool:
    """A temporary folder fersnet made, wherever it lies: marked, or empty."""
    return path.is_dir() and not path.is_symlink() and (owned(path) or not any(path.iterdir()))


def _clean_entries(folder: Path, only: str | None = None) -> tuple[list[Path], list[Path]]:
    """Remove the dead temporaries directly in `folder` (only those of `only`, when given);
    return (removed or restored, marked sub-folders)."""
    done, below = [], []
    marked = owned(folder)
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return done, below
    for p in entries:
        parsed = _parse(p.name)
        if parsed is None:
            if only is None and p.is_dir() and not p.is_symlink() and owned(p):
                below.append(p)
            continue
        name, kind, pid, host = parsed
        if (only is not None and name != only) or not (marked or _ours(p)) or _in_use(p, pid, host):
            continue
        final = folder / name
        try:
            if kind == "old" and p.is_dir() and not final.exists() and not final.is_symlink():
                p.rename(final)        # killed between the two renames of swap_in: the old one returns
            elif p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                if p.exists():
                    continue
            else:
                p.unlink()
        except OSError:
            continue                   # e.g. removed at the same moment by another command
        done.append(p)
    return done, below


def clean_temps(folder) -> list[Path]:
    """Remove what killed fersnet processes left in `folder`, in the marked folders below it,
    and `folder`'s own staging or old copies beside it; returns what was removed (or put back).

    A temporary is removed only inside a marked folder (or when it is itself a marked or empty
    folder), and only when the process named in it is no longer running on this machine, so a
    job running at the same time keeps its files.
    """
    folder = Path(folder)
    done: list[Path] = []
    if folder.parent.is_dir():
        done += _clean_entries(folder.parent, only=folder.name)[0]
    stack = [folder] if folder.is_dir() and not folder.is_symlink() else []
    while stack:
        removed, below = _clean_entries(stack.pop())
        done += removed
        stack += below
    if done:
        print(f"fersnet: removed {len(done)} leftover(s) of interrupted runs in {folder} "
              f"(e.g. {done[0].name})", file=sys.stderr)
    return done
