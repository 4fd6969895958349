"""Shared helpers of the stdio benchmarks (tools/bench_server.py, tools/bench_clients.py).

Real ``mnemolog serve`` processes driven by the MCP SDK's own stdio client, as a user's
assistant runs them; the numbers that describe those processes (CPU ticks and memory from
``/proc``); the machine; and a quick way to pre-populate a store through the library (durability ``never``, then one
catch-up of the index with the real embedder), so a benchmark starts on a store of a given
size without timing its creation.

Linux only (``/proc``). Nothing imports ``tools``; this module imports the packages.
"""

from __future__ import annotations

import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "tools"):  # the packages, and tools/synth.py
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the server processes --------------------------------------------------------------------


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``mnemolog serve`` over ``home``: this one without any
    ``MNEMOLOG_*`` setting (so every default applies: MiniLM, durability ``always``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MNEMOLOG_", "STORAGE_CONNECTION", "LOG_LEVEL"))}
    env.update({"MNEMOLOG_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)})
    env.update(extra)
    return env


def server_command(pidfile: Path, python_args: Sequence[str] = ()) -> list[str]:
    """``python -m mcp_server serve`` started through ``sh``, which writes its own pid to
    ``pidfile`` and then ``exec``s the server: the pid is the server's, read from /proc later.
    ``python_args`` go before ``-m`` (e.g. ``-m cProfile -o FILE`` to profile the server)."""
    script = 'echo $$ > "$0"; shift; exec "$@"'
    return ["/bin/sh", "-c", script, str(pidfile), "_", sys.executable, *python_args, "-m", "mcp_server", "serve"]


def server_params(env: dict[str, str], pidfile: Path, python_args: Sequence[str] = ()) -> Any:
    """``server_command`` as the MCP SDK's stdio client takes it."""
    from mcp.client.stdio import StdioServerParameters

    command, *args = server_command(pidfile, python_args)
    return StdioServerParameters(command=command, args=args, env=env, cwd=str(REPO_ROOT))


def read_pid(pidfile: Path, timeout: float = 10.0) -> int:
    """The pid written by the ``sh`` wrapper of ``server_params``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = pidfile.read_text().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no pid in {pidfile}")
        time.sleep(0.001)


def structured(result: Any) -> dict[str, Any]:
    """The structured content of a successful tool result; RuntimeError for a tool error."""
    if result.is_error or not isinstance(result.structured_content, dict):
        text = " ".join(getattr(block, "text", "") for block in result.content)
        raise RuntimeError(f"tool error: {text[:300]}")
    return result.structured_content


# -- /proc ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def memory_mb(pid: int) -> dict[str, float]:
    """Peak (VmHWM) and current (VmRSS) resident memory of a live process, in MB (2^20 bytes)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out["peak_rss_mb" if key == "VmHWM" else "rss_mb"] = round(int(value.split()[0]) / 1024, 1)
    return out


@dataclass(frozen=True)
class MachineCpu:
    """A snapshot of /proc/stat's first line: total and idle jiffies of all CPUs."""

    total: int
    idle: int

    @classmethod
    def now(cls) -> MachineCpu:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal (guest time is already in user)
        return cls(total=sum(values[:8]), idle=values[3] + values[4])

    def busy_cores_since(self, earlier: MachineCpu) -> float:
        """Average number of busy CPUs between ``earlier`` and this snapshot."""
        total = self.total - earlier.total
        if total <= 0:
            return 0.0
        return (1 - (self.idle - earlier.idle) / total) * (os.cpu_count() or 1)


def wait_for_quiet(max_wait: float, threshold: float = 0.5, window: float = 2.0) -> float:
    """Wait (at most ``max_wait`` s) for a ``window`` in which the machine's busy CPUs average
    below ``threshold``: other people's test runs come in bursts. Returns the load seen last."""
    deadline = time.monotonic() + max_wait
    while True:
        before = MachineCpu.now()
        time.sleep(window)
        busy = MachineCpu.now().busy_cores_since(before)
        if busy < threshold or time.monotonic() >= deadline:
            return round(busy, 2)


def self_cpu_seconds() -> float:
    """User + system CPU seconds of this (driver) process, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the machine and the numbers -------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
        dirty_files = sorted({line[3:] for line in dirty if line.strip()})
    except (OSError, subprocess.SubprocessError):
        commit, dirty_files = "", []
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
        "uncommitted_tracked_changes": dirty_files,
        "loadavg_at_start": [float(x) for x in load],
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank over the sorted values (nan if empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    """count, p50, p95, max of latencies given in seconds, as milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {"count": len(ms), "p50_ms": round(percentile(ms, 0.5), 2), "p95_ms": round(percentile(ms, 0.95), 2),
            "max_ms": round(max(ms), 2) if ms else float("nan")}


def median(values: Iterable[float]) -> float:
    values = [v for v in values if v == v]  # drop nan
    return round(statistics.median(values), 2) if values else float("nan")


# -- stores ----------------------------------------------------------------------------------


def populate(home: Path, project: str, count: int, seed: int = 1) -> dict[str, float]:
    """Save ``count`` synthetic memories (tools/synth.py) into ``project`` through the library
    (durability ``never``),
    then bring the index up to date once with the default embedder (MiniLM): every memory has
    its row, its vector and its cached embedding before any server starts. Returns timings."""
    from synth import write_store

    started = time.perf_counter()
    write_store(home, project, count, seed)
    written = time.perf_counter()
    found = indexed_memories(home, project)
    if found != count:
        raise RuntimeError(f"populated {count} memories but the index holds {found}")
    return {"write_s": round(written - started, 2), "index_s": round(time.perf_counter() - written, 2)}


def indexed_memories(home: Path, project: str) -> int:
    """The memories of ``project`` in the store at ``home``, its index first brought up to date."""
    from mcp_server.service import MemoryService
    from mcp_server.settings import load_settings

    service = MemoryService(load_settings({"MNEMOLOG_HOME": str(home)}))
    try:
        service.index.catch_up(project)
        return service.load(project=project, limit=1).total
    finally:
        service.close()


def copy_store(source: Path, target: Path) -> float:
    """A copy of a store (logs, index, embedding cache) that no process has open, with its
    index brought up to date (excluded from any timing); returns the seconds that took.

    A copied log is a new file (another inode), which the index rightly takes for a rewritten
    log: the first catch-up rescans it (embeddings come from the copied cache). Done here, so
    the servers under test start on an index that is current."""
    from mcp_server.service import MemoryService
    from mcp_server.settings import load_settings

    shutil.copytree(source, target, symlinks=True)
    logging.getLogger("projector.runner").setLevel(logging.ERROR)  # the expected "rewritten" warning
    started = time.perf_counter()
    service = MemoryService(load_settings({"MNEMOLOG_HOME": str(target)}))
    try:
        service.index.catch_up()
    finally:
        service.close()
    return time.perf_counter() - started


async def timed_save(client: Any, gen: Any, project: str, timed: list[float] | None) -> None:
    """One ``save_context`` of a new synthetic memory; its latency appended to ``timed``."""
    content, tags, importance = gen.memory()
    t = time.perf_counter()
    out = structured(await client.call_tool("save_context", {
        "content": content, "tags": tags, "importance_level": importance, "project_id": project}))
    if timed is not None:
        timed.append(time.perf_counter() - t)
    if not out["created"]:
        raise RuntimeError(f"save of new content answered created=false: {content!r}")


async def timed_search(client: Any, gen: Any, project: str, timed: list[float] | None) -> None:
    """One hybrid ``search_contexts``; its latency appended to ``timed``; fails if degraded."""
    query = gen.query()
    t = time.perf_counter()
    out = structured(await client.call_tool("search_contexts", {"query": query, "project_id": project}))
    if timed is not None:
        timed.append(time.perf_counter() - t)
    if out["mode"] != "hybrid" or not out["results"]:
        raise RuntimeError(f"search {query!r} answered {out['mode']} with {len(out['results'])} results")
