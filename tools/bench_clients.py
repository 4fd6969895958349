"""Many clients at once: N ``mnemolog serve`` stdio processes on one data root, each driven by
a real MCP client session at an assistant's pace, on a pre-populated store.

Run from a checkout with the project's Python (nothing to install):

    python tools/bench_clients.py                     # the numbers in BENCHMARKS.md
    python tools/bench_clients.py --clients 1,2,4,8 --duration 30 --rate 5 --memories 5000 --repeats 3
    python tools/bench_clients.py --drivers per-client  # each client session in a process of its own

For each N (and each of ``--repeats`` rounds; the N are interleaved, 1,2,4,8,1,2,4,8,..., so
the machine's changing load falls on all of them): a fresh copy of the ``--memories`` store;
N server processes with the default settings (MiniLM, durability ``always``) started at once,
each with its own MCP client session in this one asyncio driver process (``--drivers
per-client``: each session in a driver process of its own, as separate assistants are, so that
no client waits for another's share of one event loop); one untimed search
and save per client (the model loads); then for ``--duration`` seconds every client calls a
tool every 1/``--rate`` s on a fixed schedule (random phase), one save for ``--saves-per``-1
searches, all in one project; memories and queries from tools/synth.py.

Reported per N (median over the rounds): operations done, errors, p50/p95 latency of save and
search as the client sees them, how late the driver started calls against the schedule, CPU
use in cores (the servers' utime+stime from /proc/<pid>/stat over wall time, this driver's own,
and the whole machine's from /proc/stat, which includes other people's work), peak RSS per
server, and after the run the acknowledged saves found in the index and in the log (lost writes
must be 0) and whether ``verify`` finds the index equal to the logs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mcp_driver import (  # noqa: E402  (after the sys.path line, on purpose)
    MachineCpu,
    copy_store,
    cpu_seconds,
    machine,
    median,
    memory_mb,
    populate,
    read_pid,
    self_cpu_seconds,
    server_env,
    server_params,
    structured,
    summary_ms,
    wait_for_quiet,
)
from synth import Synth  # noqa: E402

PROJECT = "bench"


@dataclass
class ClientLog:
    """What one client did."""

    saves: list[float] = field(default_factory=list)
    searches: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    not_created: int = 0
    errors: list[str] = field(default_factory=list)


async def drive(client: Any, log: ClientLog, synth: Synth, k: int, start: float, args: argparse.Namespace,
                rng: random.Random) -> None:
    """Call a tool every 1/rate s from ``start`` for ``duration`` s; each call timed alone."""
    interval = 1.0 / args.rate
    phase = rng.uniform(0, interval)
    end = start + args.duration
    i = 0
    while True:
        due = start + phase + i * interval
        if due >= end:
            return
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        began = time.perf_counter()
        log.lateness.append(began - due)
        is_save = (i + k) % args.saves_per == 0
        i += 1
        try:
            if is_save:
                content, tags, importance = synth.memory()
                result = await client.call_tool("save_context", {"content": content, "tags": tags,
                                                                 "importance_level": importance,
                                                                 "project_id": PROJECT})
                took = time.perf_counter() - began
                out = structured(result)
                log.saves.append(took)
                log.acked.append(out["id"])
                log.not_created += not out["created"]
            else:
                result = await client.call_tool("search_contexts", {"query": synth.query(), "project_id": PROJECT})
                took = time.perf_counter() - began
                out = structured(result)
                if out["mode"] != "hybrid":
                    raise RuntimeError(f"search answered in {out['mode']} mode: {out.get('warning')}")
                log.searches.append(took)
        except Exception as e:  # a tool error, a timeout, a dead server: counted, the run goes on
            log.errors.append(f"{'save' if is_save else 'search'}: {type(e).__name__}: {str(e)[:200]}")


async def client_session(home: Path, errlog_path: Path, pidfile: Path, log: ClientLog, synth: Synth, k: int,
                         args: argparse.Namespace, seed: int, warm: Callable[[Any, int], Awaitable[None]],
                         start: Callable[[], float], done: Callable[[], Awaitable[None]]) -> None:
    """One server and its client session: warm up (one untimed search and save: the model
    loads), ``warm`` (returns when the load starts), ``drive`` from ``start()``, ``done`` (returns
    when the server may go)."""
    from mcp import Client
    from mcp.client.stdio import stdio_client

    with errlog_path.open("w") as errlog:
        params = server_params(server_env(home, **args.server_env), pidfile)
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=args.timeout,
                          mode=args.mode) as client:
            server_pid = read_pid(pidfile)
            structured(await client.call_tool("search_contexts", {"query": synth.query(), "project_id": PROJECT}))
            content, tags, importance = synth.memory()
            out = structured(await client.call_tool("save_context", {
                "content": content, "tags": tags, "importance_level": importance, "project_id": PROJECT}))
            log.acked.append(out["id"])
            await warm(client, server_pid)
            await drive(client, log, synth, k, start(), args, random.Random(seed + k))
            await done()


async def run_n(home: Path, work: Path, n: int, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """N servers and N client sessions for ``--duration`` seconds; CPU and memory from /proc.

    Each session lives in a task of its own (the SDK's client must be left in the task that
    entered it); a conductor task starts the load when all are warm and takes the CPU and
    memory readings while the servers still run. With ``--drivers per-client`` each session
    runs in a process of its own instead (``run_n_processes``)."""
    if args.drivers == "per-client":
        return await run_n_processes(home, work, n, args, seed)
    logs = [ClientLog() for _ in range(n)]
    synths = [Synth(seed * 100 + k) for k in range(n)]
    rng = random.Random(seed)
    errlogs = [work / f"n{n}-s{seed}-{k}.err" for k in range(n)]
    pidfiles = [work / f"n{n}-s{seed}-{k}.pid" for k in range(n)]
    pids = [0] * n
    ready = [asyncio.Event() for _ in range(n)]
    finished = [asyncio.Event() for _ in range(n)]
    go, release = asyncio.Event(), asyncio.Event()
    shared: dict[str, Any] = {}
    t0 = time.perf_counter()

    async def session(k: int) -> None:
        async def warm(client: Any, server_pid: int) -> None:
            pids[k] = server_pid
            shared.setdefault("initialized", []).append(time.perf_counter() - t0)
            ready[k].set()
            await go.wait()

        async def done() -> None:
            finished[k].set()
            await release.wait()

        await client_session(home, errlogs[k], pidfiles[k], logs[k], synths[k], k, args, seed, warm,
                             lambda: shared["start"], done)

    async def conductor() -> None:
        for event in ready:
            await event.wait()
        await asyncio.sleep(1.5)  # let the watchers' debounced catch-ups of the warm-up saves pass
        shared["cpu0"] = [cpu_seconds(pid) for pid in pids]
        shared["machine0"], shared["driver0"] = MachineCpu.now(), self_cpu_seconds()
        shared["wall0"] = time.perf_counter()
        shared["start"] = shared["wall0"] + 0.05
        go.set()
        for event in finished:
            await event.wait()
        shared["wall"] = time.perf_counter() - shared["wall0"]
        shared["machine1"], shared["driver1"] = MachineCpu.now(), self_cpu_seconds()
        shared["cpu1"] = [cpu_seconds(pid) for pid in pids]
        shared["memories"] = [memory_mb(pid) for pid in pids]
        release.set()

    async with asyncio.TaskGroup() as tasks:
        for k in range(n):
            tasks.create_task(session(k))
        tasks.create_task(conductor())
    return run_result(n, logs, errlogs, shared)


async def run_n_processes(home: Path, work: Path, n: int, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """``run_n`` with each client session in a process of its own, as each user's assistant is:
    no client waits for another's parsing and schema validation in one shared event loop. The
    children (``--client-process``) say when they are warm, start on the conductor's word at
    the same instant (``perf_counter`` is the system-wide monotonic clock on Linux), and report
    their ``ClientLog``; their CPU counts as the driver's."""
    t0 = time.perf_counter()
    errlogs = [work / f"n{n}-s{seed}-{k}.err" for k in range(n)]
    children = []
    for k in range(n):
        config = {"home": str(home), "errlog": str(errlogs[k]), "pidfile": str(work / f"n{n}-s{seed}-{k}.pid"),
                  "synth_seed": seed * 100 + k, "k": k, "seed": seed,
                  "args": {key: getattr(args, key) for key in CLIENT_ARGS}}
        with (work / f"n{n}-s{seed}-{k}.client.err").open("w") as child_err:
            children.append(await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client-process", json.dumps(config),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=child_err))

    async def say(child: Any, message: dict[str, Any]) -> None:
        child.stdin.write(json.dumps(message).encode() + b"\n")
        await child.stdin.drain()

    async def hear(child: Any) -> dict[str, Any]:
        line = await child.stdout.readline()
        if not line:
            raise RuntimeError(f"a client process exited early (status {await child.wait()}); see {work}")
        return dict(json.loads(line))

    warm = [await hear(child) for child in children]
    shared: dict[str, Any] = {"initialized": [w["initialized_at"] - t0 for w in warm]}
    pids = [w["server_pid"] for w in warm]

    def driver_cpu() -> float:
        return self_cpu_seconds() + sum(cpu_seconds(child.pid) for child in children)

    await asyncio.sleep(1.5)  # let the watchers' debounced catch-ups of the warm-up saves pass
    shared["cpu0"] = [cpu_seconds(pid) for pid in pids]
    shared["machine0"], shared["driver0"] = MachineCpu.now(), driver_cpu()
    shared["wall0"] = time.perf_counter()
    for child in children:
        await say(child, {"start": shared["wall0"] + 0.05})
    logs = [ClientLog(**(await hear(child))["log"]) for child in children]
    shared["wall"] = time.perf_counter() - shared["wall0"]
    shared["machine1"], shared["driver1"] = MachineCpu.now(), driver_cpu()
    shared["cpu1"] = [cpu_seconds(pid) for pid in pids]
    shared["memories"] = [memory_mb(pid) for pid in pids]
    for child in children:
        await say(child, {"release": True})
    for child in children:
        if await child.wait() != 0:
            raise RuntimeError(f"a client process failed; see {work}")
    for k, w in enumerate(warm):
        logs[k].acked[:0] = w["acked"]
    return run_result(n, logs, errlogs, shared)


# The settings a client process needs (``--client-process``).
CLIENT_ARGS = ("rate", "duration", "saves_per", "timeout", "mode", "server_env")


async def client_process(config: dict[str, Any]) -> None:
    """One client session in this process, for ``run_n_processes``: lines of JSON on stdout
    (warm; the log), the conductor's on stdin (start; release)."""
    if time.get_clock_info("perf_counter").implementation != "clock_gettime(CLOCK_MONOTONIC)":
        raise SystemExit("--drivers per-client needs perf_counter on the system-wide monotonic clock (Linux)")
    args = argparse.Namespace(**config["args"])
    log, shared = ClientLog(), {}

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    async def hear() -> dict[str, Any]:
        return dict(json.loads(await asyncio.to_thread(sys.stdin.readline)))

    async def warm(client: Any, server_pid: int) -> None:
        say({"server_pid": server_pid, "initialized_at": time.perf_counter(), "acked": log.acked})
        log.acked.clear()  # the parent counts the warm-up save from the line above
        shared["start"] = (await hear())["start"]

    async def done() -> None:
        say({"log": dataclasses.asdict(log)})
        await hear()  # release: the parent has read the servers' CPU and memory

    await client_session(Path(config["home"]), Path(config["errlog"]), Path(config["pidfile"]), log,
                         Synth(config["synth_seed"]), config["k"], args, config["seed"], warm,
                         lambda: shared["start"], done)


def run_result(n: int, logs: list[ClientLog], errlogs: list[Path], shared: dict[str, Any]) -> dict[str, Any]:
    """One run's figures from the clients' logs and the conductor's readings."""
    warm_s = max(shared["initialized"])
    wall = shared["wall"]
    cpu0, cpu1, memories = shared["cpu0"], shared["cpu1"], shared["memories"]
    machine0, machine1 = shared["machine0"], shared["machine1"]
    driver0, driver1 = shared["driver0"], shared["driver1"]
    stderr_problems = [f"{p.name}: {line.strip()[:200]}" for p in errlogs for line in p.read_text().splitlines()
                       if "Traceback" in line or " ERROR " in line or "CRITICAL" in line]
    saves = [x for log in logs for x in log.saves]
    searches = [x for log in logs for x in log.searches]
    lateness = [x for log in logs for x in log.lateness]
    acked = [i for log in logs for i in log.acked]
    errors = [e for log in logs for e in log.errors]
    server_cores = sum(b - a for a, b in zip(cpu0, cpu1, strict=True)) / wall
    driver_cores = (driver1 - driver0) / wall
    machine_cores = machine1.busy_cores_since(machine0)
    return {
        "clients": n,
        "servers_warm_s": round(warm_s, 2),  # spawn to every server warm (model loaded)
        "wall_s": round(wall, 2),
        "operations": len(saves) + len(searches),
        "ops_per_s": round((len(saves) + len(searches)) / wall, 1),
        "errors": len(errors),
        "error_samples": errors[:5],
        "save": summary_ms(saves),
        "search": summary_ms(searches),
        "driver_lateness": summary_ms(lateness),
        "acknowledged_saves": len(acked),
        "acknowledged_not_created": sum(log.not_created for log in logs),
        "cpu_cores": {
            "servers": round(server_cores, 2),
            "per_server": round(server_cores / n, 3),
            "driver": round(driver_cores, 2),
            "machine": round(machine_cores, 2),
            "rest_of_machine": round(machine_cores - server_cores - driver_cores, 2),
        },
        "server_peak_rss_mb_max": max(m["peak_rss_mb"] for m in memories),
        "server_stderr_problems": stderr_problems[:10],
        "_acked_ids": acked,
    }


def check_store(home: Path, acked: list[str]) -> dict[str, Any]:
    """After the servers are gone: each acknowledged id in the index (through the library) and
    among the log's saves, and the index equal to a replay of the logs."""
    from mcp_server.service import MemoryService
    from mcp_server.settings import load_settings
    from eventlog import MemorySaved
    from projector.errors import MemoryNotFound

    unique = set(acked)
    service = MemoryService(load_settings({"MNEMOLOG_HOME": str(home), "MNEMOLOG_EMBEDDER": "none"}))
    try:
        in_index = set()
        for memory_id in unique:
            try:
                in_index.add(service.index.get(PROJECT, memory_id).id)
            except MemoryNotFound:
                pass
        in_log = {e.memory_id for e in service.log.read(PROJECT) if isinstance(e, MemorySaved)}
        report = service.verify()
    finally:
        service.close()
    return {
        "acknowledged_unique": len(unique),
        "found_in_index": len(in_index),
        "found_in_log": len(unique & in_log),
        "lost_writes": len(unique - (in_index & in_log)),
        "verify_ok": bool(report.ok and not report.problems),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="mnemolog-bench-clients-", dir=args.dir))
    work = root / "work"
    work.mkdir()
    result: dict[str, Any] = {"machine": machine(), "command": " ".join(["python", *sys.argv]),
                              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in args.clients}
    try:
        base = root / "base"
        print(f"populating {args.memories} memories ...", file=sys.stderr)
        result["populate"] = populate(base, PROJECT, args.memories)
        for r in range(args.repeats):
            for n in args.clients:
                home = root / f"r{r}-n{n}"
                copy_store(base, home)
                print(f"round {r + 1}/{args.repeats}: {n} client(s) for {args.duration:g} s ...", file=sys.stderr)
                load_before = wait_for_quiet(args.wait_quiet)
                one = asyncio.run(run_n(home, work, n, args, seed=1000 * (r + 1) + n))
                one["machine_busy_cores_before"] = load_before
                one.update(check_store(home, one.pop("_acked_ids")))
                print(f"  ops {one['operations']} errors {one['errors']} save p50 {one['save']['p50_ms']} ms "
                      f"search p50 {one['search']['p50_ms']} ms cores servers {one['cpu_cores']['servers']} "
                      f"machine {one['cpu_cores']['machine']} lost {one['lost_writes']}", file=sys.stderr)
                runs[n].append(one)
                if not args.keep:
                    shutil.rmtree(home, ignore_errors=True)
        result["runs"] = {str(n): v for n, v in runs.items()}
        result["summary"] = summarize(runs)
        result["acceptance"] = acceptance(result["summary"], args.clients)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return result


def summarize(runs: dict[int, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per N: medians over the rounds; counts (errors, lost writes) summed."""
    out = {}
    for n, rs in runs.items():
        out[str(n)] = {
            "rounds": len(rs),
            "operations": median(r["operations"] for r in rs),
            "ops_per_s": median(r["ops_per_s"] for r in rs),
            "errors_total": sum(r["errors"] for r in rs),
            "save_p50_ms": median(r["save"]["p50_ms"] for r in rs),
            "save_p95_ms": median(r["save"]["p95_ms"] for r in rs),
            "search_p50_ms": median(r["search"]["p50_ms"] for r in rs),
            "search_p95_ms": median(r["search"]["p95_ms"] for r in rs),
            "driver_lateness_p95_ms": median(r["driver_lateness"]["p95_ms"] for r in rs),
            "servers_cores": median(r["cpu_cores"]["servers"] for r in rs),
            "driver_cores": median(r["cpu_cores"]["driver"] for r in rs),
            "machine_cores": median(r["cpu_cores"]["machine"] for r in rs),
            "rest_of_machine_cores": median(r["cpu_cores"]["rest_of_machine"] for r in rs),
            "server_peak_rss_mb_max": max(r["server_peak_rss_mb_max"] for r in rs),
            "acknowledged_total": sum(r["acknowledged_unique"] for r in rs),
            "found_total": sum(r["acknowledged_unique"] - r["lost_writes"] for r in rs),
            "lost_writes_total": sum(r["lost_writes"] for r in rs),
            "verify_ok_all": all(r["verify_ok"] for r in rs),
            "server_stderr_problems": sum(len(r["server_stderr_problems"]) for r in rs),
        }
    return out


def acceptance(summary: dict[str, dict[str, Any]], clients: list[int]) -> dict[str, Any]:
    """The bar: at the largest N, p50 of each operation within 10% of the 1-client p50; zero
    errors; zero lost writes."""
    if "1" not in summary or len(clients) < 2:
        return {}
    one, most = summary["1"], summary[str(max(clients))]
    ratios = {op: round(most[f"{op}_p50_ms"] / one[f"{op}_p50_ms"], 3) for op in ("save", "search")}
    return {
        "clients": max(clients),
        "p50_ratio_vs_1_client": ratios,
        "p50_within_10_percent": all(r <= 1.10 for r in ratios.values()),
        "zero_errors": all(s["errors_total"] == 0 for s in summary.values()),
        "zero_lost_writes": all(s["lost_writes_total"] == 0 for s in summary.values()),
    }


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [
        "| Clients | Ops done | Errors | Save p50 / p95 | Search p50 / p95 | CPU cores: servers / driver / "
        "whole machine | Acked saves found / acked | Peak RSS per server |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, x in s.items():
        lines.append(
            f"| {n} | {x['operations']:.0f} | {x['errors_total']} | {x['save_p50_ms']:.1f} / {x['save_p95_ms']:.1f} ms "
            f"| {x['search_p50_ms']:.1f} / {x['search_p95_ms']:.1f} ms | {x['servers_cores']:.2f} / "
            f"{x['driver_cores']:.2f} / {x['machine_cores']:.2f} | {x['found_total']} / {x['acknowledged_total']} "
            f"| {x['server_peak_rss_mb_max']:.0f} MB |")
    a = result.get("acceptance")
    if a:
        r = a["p50_ratio_vs_1_client"]
        lines.append("")
        lines.append(f"{a['clients']} clients vs 1: save p50 ×{r['save']:.2f}, search p50 ×{r['search']:.2f} "
                     f"(bar ≤ ×1.10: {'met' if a['p50_within_10_percent'] else 'missed'}); errors: "
                     f"{'none' if a['zero_errors'] else 'some'}; lost writes: "
                     f"{'none' if a['zero_lost_writes'] else 'some'}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,2,4,8", help="comma-separated numbers of clients (default 1,2,4,8)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per N and round (default 30)")
    parser.add_argument("--rate", type=float, default=5.0, help="tool calls per second per client (default 5)")
    parser.add_argument("--saves-per", type=int, default=5,
                        help="one save in this many calls, the rest searches (default 5: 1 save : 4 searches)")
    parser.add_argument("--memories", type=int, default=5000, help="memories in the store before (default 5000)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every N, interleaved (default 3)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a call counts as failed")
    parser.add_argument("--mode", default="legacy", choices=["legacy", "auto"],
                        help="client handshake: 'legacy' = initialize, as Claude Desktop and Claude Code "
                             "connect (default); 'auto' = the SDK's server/discover probe (2026-07-28)")
    parser.add_argument("--wait-quiet", type=float, default=60.0, metavar="S",
                        help="before each run, wait up to S seconds for the machine's other load to drop "
                             "below half a core (default 60; 0: do not wait)")
    parser.add_argument("--dir", help="where the temporary stores go (default: the system temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary stores and server logs")
    parser.add_argument("--json", type=Path, help="also write the JSON result here")
    parser.add_argument("--drivers", default="one", choices=["one", "per-client"],
                        help="'one': every client session in this process's event loop (default); "
                             "'per-client': each in a process of its own, as separate assistants are")
    parser.add_argument("--client-process", metavar="JSON", help=argparse.SUPPRESS)  # run_n_processes' children
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for every server, e.g. MNEMOLOG_DURABILITY=never (repeatable); "
                             "the servers otherwise get none of this shell's MNEMOLOG_* variables")
    args = parser.parse_args()
    if args.client_process:
        asyncio.run(client_process(json.loads(args.client_process)))
        return
    pairs = [item.partition("=") for item in args.server_env]
    if any(not name or not sep for name, sep, _ in pairs):
        parser.error("--server-env takes NAME=VALUE")
    args.server_env = {name: value for name, _, value in pairs}
    args.clients = [int(x) for x in args.clients.split(",") if x.strip()]
    if args.saves_per < 1 or args.rate <= 0 or not args.clients or min(args.clients) < 1:
        parser.error("--saves-per, --rate and every --clients value must be positive")
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    print()
    print(markdown(result))
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
