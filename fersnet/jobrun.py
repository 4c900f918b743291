"""Run one workflow job's command with its output in its log, and end the log with how it ended.

    python -m fersnet.jobrun LOG -- fersnet train --db ckplus ...

The command's stdout and stderr go to LOG (created, parent folders too); when the command ends the
last line of LOG says how: `fersnet job: exit code 0 after 12.3 s` or `fersnet job: ended by signal
SIGKILL (9) after 3.1 s`. A job that fails therefore always leaves something to read, even when it
died before printing a line. The log fills while the job runs: it is written unbuffered, and a
Python command runs with PYTHONUNBUFFERED=1 (its print()s would otherwise wait in an 8 KB buffer
until it ends, since its output is a file, not a terminal) and PYTHONFAULTHANDLER=1: a crash inside
native code (a segmentation fault in a library), which Python itself reports with no line, leaves
the Python stack of every thread in the log above the signal line. SIGTERM and SIGINT received by
this wrapper (Snakemake cancelling a job, Ctrl-C) are passed on to the command, and the wrapper
exits as the command did.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

USAGE = "usage: python -m fersnet.jobrun LOG -- COMMAND [ARG ...]"


def ending(returncode: int) -> str:
    """How a process ended, in words: `exit code 2`, `signal SIGKILL (9)`."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"ended by signal {name} ({-returncode})"
    return f"exit code {returncode}"


def end_line(how: str, seconds: float) -> str:
    """The last line of a job's log: `fersnet job: <how> after <seconds> s`."""
    return f"fersnet job: {how} after {seconds:.1f} s\n"


def run(log: Path, cmd: list[str]) -> int:
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log, "wb", buffering=0) as out:
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1"))
        except OSError as e:
            out.write(f"fersnet job: could not start {cmd[0]!r}: {e}\n".encode())
            out.write(end_line("exit code 127", time.monotonic() - t0).encode())
            return 127

        def forward(signum, frame):
            proc.send_signal(signum)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, forward)
        returncode = proc.wait()
        out.write(("\n" + end_line(ending(returncode), time.monotonic() - t0)).encode())
        os.fsync(out.fileno())
    return returncode if returncode >= 0 else 128 - returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[1] != "--":
        print(USAGE, file=sys.stderr)
        return 2
    return run(Path(argv[0]), argv[2:])


if __name__ == "__main__":
    sys.exit(main())
