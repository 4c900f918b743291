"""A line per finished job of a Snakemake run, with the time elapsed and an estimate of what remains.

Read from the lines Snakemake prints (on stderr), which the demo passes through unchanged:
the plan (`Job stats:`, a count per rule), a block per job started (`rule train_fold0:` or
`localrule synth:`, then `jobid: N`, `wildcards: ...`), and per job finished `Finished jobid: N
(Rule: train_fold0)` followed by `k of n steps (x%) done`. Snakemake 9 prints these in this form;
a line that does not match is passed over, so an unexpected format costs the estimate, never the run.

The estimate: each job still to run takes the mean time of its rule, read from the benchmark
records (benchmarks/, Snakemake's `benchmark:` files) of earlier jobs where there are some, else the
mean of the rule's jobs finished in this run; a running job counts for what is left of that mean.
The training, judge and scoring rules of every fold group (`train_fold3`, `train_folds0_4`) are
timed together per step, per fold. The sum is divided by the parallelism seen so far (busy job time
over elapsed time, between 1 and the cores Snakemake was given). Jobs of a rule with no time yet are
counted apart.
"""
from __future__ import annotations

import csv
import glob
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fersnet import paths

JOB_START = re.compile(r"^(?:local)?(?:rule|checkpoint) (\S+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
WILDCARDS = re.compile(r"^\s+wildcards: (.+)$")
FINISHED = re.compile(r"^Finished job(?:id:)? (\d+)")
FAILED = re.compile(r"^Error in rule (\S+):$")
STEPS = re.compile(r"^(\d+) of (\d+) steps \(\d+%\) done$")
CORES = re.compile(r"^Provided cores: (\d+)")
STATS_ROW = re.compile(r"^(\S+)\s+(\d+)$")

# the steps whose jobs keep a benchmark record (workflow/rules/train.smk): rule `<step>_<fold group>`
BENCHMARKED_STEPS = ("train", "judge", "score")


def family(rule: str) -> tuple[str, int]:
    """(what a rule's jobs are timed with, folds per job): the training, judge and scoring rules of
    every fold group (paths.group_tag: `train_fold3`, `train_folds0_4`) share their step, timed
    per fold; any other rule is timed on its own, per job."""
    step, _, tag = rule.partition("_")
    folds = paths.group_size(tag) if step in BENCHMARKED_STEPS else None
    return (step, folds) if folds else (rule, 1)


def benchmarked_seconds(root: Path | str = ".") -> Callable[[str], list[float]]:
    """family -> the seconds per fold of every benchmark record (paths.benchmark_file: one file per
    job, earlier runs' and this run's) of that step under `root`; [] for any other family."""
    def seconds(step: str) -> list[float]:
        if step not in BENCHMARKED_STEPS:
            return []
        pattern = paths.benchmark_file(step, "*", None if step == "judge" else "*", "*", seed="*")
        found = []
        for name in sorted(glob.glob(str(Path(root) / pattern))):
            tag = re.search(r"_seed\d+_(\w+)$", Path(name).stem)
            folds = paths.group_size(tag.group(1)) if tag else None
            found += [s / folds for s in _record_seconds(Path(name))] if folds else []
        return found
    return seconds


def _record_seconds(tsv: Path) -> list[float]:
    """The `s` column of one Snakemake benchmark record; [] for a file that cannot be read."""
    try:
        with open(tsv, newline="") as f:
            return [float(row["s"]) for row in csv.DictReader(f, delimiter="\t") if row.get("s")]
    except (OSError, ValueError, KeyError):
        return []


def duration(seconds: float) -> str:
    """42 s, 3.5 min, 25 min, 1 h 05 min."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


@dataclass
class _Job:
    rule: str
    started: float
    wildcards: str = ""


@dataclass
class Progress:
    """Feed it Snakemake's lines one at a time (`feed`); it returns the lines to print.

    `timings(family)` gives the seconds of earlier jobs per fold (benchmarked_seconds); `targets`
    are the rules that only gather others (`all`), which take no time; `clock` is the time source
    (monotonic seconds)."""

    timings: Callable[[str], list[float]] = field(default=lambda rule: [])
    targets: tuple[str, ...] = ("all",)
    clock: Callable[[], float] = time.monotonic
    planned: Counter = field(default_factory=Counter)
    finished: Counter = field(default_factory=Counter)
    seconds: dict = field(default_factory=lambda: defaultdict(list))
    running: dict = field(default_factory=dict)
    failed: Counter = field(default_factory=Counter)
    cores: int | None = None

    def __post_init__(self):
        self.t0 = self.clock()
        self._first_start: float | None = None
        self._in_stats = False
        self._block: str | None = None          # the rule of the job block being read
        self._block_job: _Job | None = None     # and its job, once its `jobid:` line is read
        self._error = False                     # the block is Snakemake's report of a failed job
        self._busy = 0.0                        # seconds the finished jobs ran
        self._last: tuple[str, _Job | None, float] | None = None

    def feed(self, line: str) -> list[str]:
        line = line.rstrip("\r\n")
        now = self.clock()
        if self._read_plan(line):
            return []
        if m := CORES.match(line):
            self.cores = int(m.group(1))
        elif m := JOB_START.match(line):
            self._block, self._block_job, self._error = m.group(1), None, False
        elif m := FAILED.match(line):
            self._block, self._block_job, self._error = m.group(1), None, True
        elif self._error and (m := JOBID.match(line)):
            if self.running.pop(m.group(1), None) is not None:      # it no longer runs, nor will
                self.failed[self._block] += 1
        elif self._block and (m := JOBID.match(line)):
            self._block_job = self.running[m.group(1)] = _Job(self._block, now)
            self._first_start = now if self._first_start is None else self._first_start
        elif self._block and self._block_job and (m := WILDCARDS.match(line)):
            self._block_job.wildcards = m.group(1)
        elif m := FINISHED.match(line):
            self._block, self._block_job, self._error = None, None, False
            job = self.running.pop(m.group(1), None)
            rule = job.rule if job else (re.search(r"\(Rule: (\S+)\)", line) or [None, "?"])[1]
            self.finished[rule] += 1
            if job:
                self._busy += now - job.started
                key, folds = family(rule)
                self.seconds[key].append((now - job.started) / folds)
            self._last = (rule, job, now)
        elif (m := STEPS.match(line)) and self._last:
            said = self.line(int(m.group(1)), int(m.group(2)), now)
            self._last = None
            return [said]
        elif not line.startswith(" "):
            self._block, self._block_job, self._error = None, None, False
        return []

    def _read_plan(self, line: str) -> bool:
        """The `Job stats:` table: a row `rule count` per rule, ended by `total N`."""
        if line.startswith("Job stats:"):
            self._in_stats = True
            self.planned.clear()
            return True
        if not self._in_stats:
            return False
        m = STATS_ROW.match(line)
        if m and m.group(1) == "total":
            self._in_stats = False
        elif m and m.group(1) != "job":
            self.planned[m.group(1)] = int(m.group(2))
        elif not line.strip() or not (line.startswith("job") or line.startswith("-")):
            self._in_stats = False
            return False
        return True

    def per_job(self, rule: str) -> float | None:
        """The expected seconds of one job of `rule`: the benchmark records of its family (`family`),
        else the family's jobs finished so far, times the job's folds."""
        if rule in self.targets:
            return 0.0
        key, folds = family(rule)
        known = self.timings(key) or self.seconds.get(key)
        return folds * sum(known) / len(known) if known else None

    def left(self, now: float) -> tuple[float, int]:
        """(seconds of wall-clock time the remaining jobs are expected to take, jobs not timed)."""
        work, untimed = 0.0, 0
        mean = {rule: self.per_job(rule) for rule in self.planned}
        for rule, count in self.planned.items():
            running = [j for j in self.running.values() if j.rule == rule]
            waiting = max(0, count - self.finished[rule] - self.failed[rule] - len(running))
            if mean[rule] is None:
                untimed += waiting + len(running)
                continue
            work += waiting * mean[rule] + sum(max(0.0, mean[rule] - (now - j.started)) for j in running)
        return work / self.parallelism(now), untimed

    def parallelism(self, now: float) -> float:
        """Busy job time over elapsed time since the first job started, between 1 and the cores."""
        if self._first_start is None or now <= self._first_start:
            return 1.0
        busy = self._busy + sum(now - j.started for j in self.running.values())
        return min(max(busy / (now - self._first_start), 1.0), float(self.cores or 1e9))

    def line(self, done: int, total: int, now: float) -> str:
        rule, job, ended = self._last
        what = rule + (f" ({_values(job.wildcards)})" if job and job.wildcards else "")
        took = f" in {duration(ended - job.started)}" if job else ""
        text = f"{done}/{total} done: {what}{took}; {duration(now - self.t0)} elapsed"
        if done >= total:
            return text
        seconds, untimed = self.left(now)
        if untimed and seconds < 1:
            return text + f", {untimed} job(s) left, not timed yet"
        text += f", about {duration(seconds)} left"
        return text + (f" (+{untimed} job(s) not timed yet)" if untimed else "")


def _values(wildcards: str) -> str:
    """`db=ckplus, model=fersnet, seed=0` -> `ckplus fersnet seed0`."""
    parts = [p.partition("=") for p in wildcards.split(", ")]
    return " ".join(f"seed{v}" if k == "seed" else v for k, _, v in parts)
