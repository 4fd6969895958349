"""Benchmark of event log appends: durable and non-durable, 1 and N processes, batches.

Run from a checkout (no install needed; the script puts the repo root on ``sys.path``):

    python tools/bench_append.py                # the numbers in BENCHMARKS.md
    python tools/bench_append.py --runs 3 --saves 1000 --dir /path/on/the/disk/to/test

Measures, each repeated ``--runs`` times and reported as the median:

- the fdatasync floor of the disk: a pure-Python loop of one-line ``write`` + ``fdatasync``,
  which bounds any durable append that syncs once per save;
- ``EventLog.save`` from 1 process and from ``--procs`` real processes at once, with
  durability ``always`` and ``never``: saves/s (all processes together) and the p50/p95
  latency of one save;
- ``EventLog.append`` of ``--batch`` events per call (built with ``build_save``), durable:
  events/s.

The store lives in a fresh temporary directory under ``--dir`` (default: the system temp
dir), deleted afterwards. The machine's other load shows up in the numbers: run it idle.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventlog import EventLog  # noqa: E402  (after the sys.path line, on purpose)

PROJECT = "bench"
FILLER = "lorem ipsum dolor sit amet " * 6  # content of ~200 bytes, a typical memory


def content(worker: int, run: int, i: int) -> str:
    return f"worker {worker} run {run} memory {i}: {FILLER}"


@dataclass
class Sample:
    """One run: how many appends (events) in how many seconds, and each call's latency."""

    events: int
    seconds: float
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the measurements --------------------------------------------------------------------


Timing = tuple[float, float, list[float]]  # (monotonic start, monotonic end, latencies)


def sync_loop(root: str, durability: str, worker: int, run: int, count: int) -> Timing:
    """A 1-line write + fdatasync loop in pure Python: the most a synced append can do."""
    path = Path(root) / f"floor-{worker}.jsonl"
    line = ('{"v":1,"type":"memory.saved","content":"' + FILLER + '"}\n').encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    sync = getattr(os, "fdatasync", os.fsync)
    os.write(fd, line)
    sync(fd)  # the file exists and has a block: not timed
    try:
        started = time.monotonic()
        for _ in range(count):
            os.write(fd, line)
            sync(fd)
        return started, time.monotonic(), []
    finally:
        os.close(fd)


def save_loop(root: str, durability: str, worker: int, run: int, count: int) -> Timing:
    """``count`` saves; returns (monotonic start, monotonic end, latency of each save)."""
    log = EventLog(root, durability=durability, client=f"bench-{worker}")
    log.save(PROJECT, f"warm-up {worker} {run}")  # directories, lock file, imports: not timed
    latencies = []
    clock = time.perf_counter
    started = time.monotonic()
    for i in range(count):
        t0 = clock()
        log.save(PROJECT, content(worker, run, i))
        latencies.append(clock() - t0)
    return started, time.monotonic(), latencies


LOOPS = {"sync": sync_loop, "save": save_loop}


def one_process(loop: str, root: Path, durability: str, run: int, count: int) -> Sample:
    root.mkdir(parents=True, exist_ok=True)
    started, ended, latencies = LOOPS[loop](str(root), durability, 0, run, count)
    return Sample(count, ended - started, latencies)


def _worker(loop: str, root: str, durability: str, worker: int, run: int, count: int, barrier: object, results: object) -> None:
    EventLog(root).save(PROJECT, f"warm-up {worker} {run}")  # imports and directories
    barrier.wait()  # type: ignore[attr-defined]
    results.put(LOOPS[loop](root, durability, worker, run, count))  # type: ignore[attr-defined]


def many_processes(loop: str, root: Path, durability: str, run: int, count: int, procs: int) -> Sample:
    """``procs`` real processes (spawned) at once; the rate is of all of them together."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(loop, str(root), durability, w, run, count, barrier, results))
        for w in range(procs)
    ]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=600) for _ in workers]
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise RuntimeError(f"a benchmark worker failed with exit code {w.exitcode}")
    start = min(o[0] for o in outcomes)
    end = max(o[1] for o in outcomes)
    return Sample(procs * count, end - start, [lat for o in outcomes for lat in o[2]])


def batched(root: Path, run: int, count: int, batch: int) -> Sample:
    """Durable ``append`` calls of ``batch`` events each (building the events is timed too)."""
    log = EventLog(root, durability="always")
    log.save(PROJECT, f"warm-up batch {run}")
    latencies = []
    started = time.perf_counter()
    for first in range(0, count, batch):
        t0 = time.perf_counter()
        events = [log.build_save(PROJECT, content(0, run, i)) for i in range(first, min(first + batch, count))]
        log.append(PROJECT, events)
        latencies.append(time.perf_counter() - t0)
    return Sample(count, time.perf_counter() - started, latencies)


# -- running and reporting ---------------------------------------------------------------


@dataclass
class Row:
    name: str
    samples: list[Sample]

    @property
    def rate(self) -> float:
        return statistics.median(s.rate for s in self.samples)

    def latency(self, q: float) -> float | None:
        with_latencies = [s for s in self.samples if s.latencies]
        if not with_latencies:
            return None
        return statistics.median(percentile(s.latencies, q) for s in with_latencies)


def repeat(name: str, runs: int, base: Path, measure: Callable[[Path, int], Sample]) -> Row:
    samples = []
    for run in range(runs):
        directory = Path(tempfile.mkdtemp(prefix="bench-", dir=base))
        try:
            samples.append(measure(directory / "store", run))
        finally:
            shutil.rmtree(directory)
        print(f"  {name}: run {run + 1}/{runs}: {samples[-1].rate:,.0f}/s", file=sys.stderr)
    return Row(name, samples)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_all(args: argparse.Namespace) -> list[Row]:
    base = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    n, runs, procs = args.saves, args.runs, args.procs
    one = lambda loop, durability: lambda d, r: one_process(loop, d, durability, r, n)  # noqa: E731
    many = lambda loop, durability: lambda d, r: many_processes(loop, d, durability, r, n, procs)  # noqa: E731
    return [
        repeat("fdatasync floor: 1-line write + fdatasync loop, pure Python, 1 process", runs, base, one("sync", "always")),
        repeat(f"fdatasync floor: the same loop in {procs} processes at once", runs, base, many("sync", "always")),
        repeat("save, 1 process, durability=always", runs, base, one("save", "always")),
        repeat(f"save, {procs} processes at once, durability=always", runs, base, many("save", "always")),
        repeat("save, 1 process, durability=never", runs, base, one("save", "never")),
        repeat(f"save, {procs} processes at once, durability=never", runs, base, many("save", "never")),
        repeat(
            f"append of {args.batch} events per call, 1 process, durability=always",
            runs,
            base,
            lambda d, r: batched(d, r, n * 5, args.batch),
        ),
    ]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.3f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| measurement | appends/s (median) | min - max of the runs | p50 ms per call | p95 ms per call |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        rates = [s.rate for s in row.samples]
        lines.append(
            f"| {row.name} | {row.rate:,.0f} | {min(rates):,.0f} - {max(rates):,.0f} "
            f"| {ms(row.latency(0.5))} | {ms(row.latency(0.95))} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each measurement (default 5)")
    parser.add_argument("--saves", type=int, default=2000, help="saves per process per run (default 2000)")
    parser.add_argument("--procs", type=int, default=4, help="processes for the concurrent runs (default 4)")
    parser.add_argument("--batch", type=int, default=100, help="events per append call (default 100)")
    parser.add_argument("--dir", help="where to make the temporary store (default: the temp dir)")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON instead of a table")
    args = parser.parse_args(argv)
    print(
        f"# {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}, "
        f"{args.runs} runs x {args.saves} saves per process",
        file=sys.stderr,
    )
    rows = run_all(args)
    if args.json:
        medians = {r.name: {"rate": r.rate, "p50": r.latency(0.5), "p95": r.latency(0.95)} for r in rows}
        print(json.dumps(medians, indent=2))
    else:
        print(table(rows))


if __name__ == "__main__":
    main()
