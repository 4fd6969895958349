"""The MCP server over real stdio: cold start, save and search latency, memory per process.

Run from a checkout with the project's Python (nothing to install):

    python tools/bench_server.py                      # the numbers in BENCHMARKS.md
    python tools/bench_server.py --cold-runs 5 --rounds 3 --ops 200 --memories 1000
    python tools/bench_server.py --profile /tmp/prof  # also one round sampled by py-spy
    python tools/bench_server.py --memories 100000 --store /tmp/projector-bench-stores/store-100000

Every server is a real ``python -m mcp_server serve`` child process with the default settings
(MiniLM embedder, durability ``always``) on a fresh temporary ``MNEMOLOG_HOME``, driven by the
MCP SDK's stdio client as an assistant drives it. Measured:

- cold start, ``--cold-runs`` times each (median): spawn -> initialized, spawn -> ``tools/list``
  answered, spawn -> first ``search_contexts`` answered (which loads the model and opens the
  index), on an empty store and on the ``--memories`` store (already indexed);
- ``--rounds`` rounds (each a fresh server on a fresh copy of the ``--memories`` store):
  ``--ops`` saves and ``--ops`` searches alternating, ``--pause-ms`` apart, after ``--warmup``
  untimed calls of each; p50/p95 of each as seen by the client; the ping round trip (the
  transport's floor); the server's peak and current RSS (VmHWM/VmRSS) after the searches;
- the same save/search/ping mix on the wire: a bare JSON-RPC client (one line out, read lines
  until the answer) on a fresh server each round, which times the server's part of a call
  without the SDK client's own work (parsing into models, validating the structured result
  against the tool's output schema);
- the same mix through the official TypeScript MCP SDK client, the library Claude Code and
  Claude Desktop are built on (tools/ts_client/drive.mjs; ``npm ci`` installs its pinned
  version there on the first run; skipped with a note if node or npm is missing, or ``--no-ts``);
- the same save/search mix through ``MemoryService`` in this process (no MCP, no pipes), to
  split a call's time into the service's work and the protocol's.

Memories and queries come from tools/synth.py. The store is pre-populated through the library (durability ``never``, one catch-up with the
embedder), excluded from every timing. The machine's other load shows up in the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mcp_driver import (  # noqa: E402  (after the sys.path line, on purpose)
    REPO_ROOT,
    MachineCpu,
    copy_store,
    cpu_seconds,
    indexed_memories,
    machine,
    median,
    memory_mb,
    populate,
    read_pid,
    server_command,
    server_env,
    server_params,
    structured,
    timed_save,
    timed_search,
    summary_ms,
    wait_for_quiet,
)
from synth import Synth  # noqa: E402

PROJECT = "bench"
GOALS = {"tools_list_s": 1.0, "save_p50_ms": 5.0, "search_p50_ms": 10.0, "peak_rss_mb": 200.0}


MODE = "legacy"  # set from --mode


def client_for(home: Path, pidfile: Path, errlog: Any) -> Any:
    from mcp import Client
    from mcp.client.stdio import stdio_client

    params = server_params(server_env(home), pidfile)
    return Client(stdio_client(params, errlog=errlog), read_timeout_seconds=120, mode=MODE)


# -- cold start ----------------------------------------------------------------------------


async def cold_start(home: Path, work: Path, tag: str, query: str) -> dict[str, Any]:
    """Spawn a server; time the handshake, ``tools/list`` and the first search."""
    pidfile = work / f"{tag}.pid"
    with (work / f"{tag}.err").open("w") as errlog:
        client = client_for(home, pidfile, errlog)  # nothing spawned yet: that is __aenter__
        t0 = time.perf_counter()
        async with client:
            t_init = time.perf_counter()
            tools = await client.list_tools()
            t_list = time.perf_counter()
            pid = read_pid(pidfile)
            rss_listed = memory_mb(pid)
            result = await client.call_tool("search_contexts", {"query": query, "project_id": PROJECT})
            t_search = time.perf_counter()
            found = structured(result)
            rss_searched = memory_mb(pid)
            cpu = cpu_seconds(pid)
            protocol = client.protocol_version
    return {
        "initialized_s": round(t_init - t0, 3),
        "tools_list_s": round(t_list - t0, 3),
        "first_search_s": round(t_search - t0, 3),
        "tools": len(tools.tools),
        "results": len(found["results"]),
        "mode": found["mode"],
        "rss_after_list_mb": rss_listed["rss_mb"],
        "peak_rss_after_search_mb": rss_searched["peak_rss_mb"],
        "cpu_s_until_first_search": round(cpu, 2),
        "protocol": protocol,
    }


# -- latency -------------------------------------------------------------------------------


async def latency_round(home: Path, work: Path, tag: str, args: argparse.Namespace, seed: int,
                        profile: Path | None = None) -> dict[str, Any]:
    """One fresh server: warm-up, then alternating timed saves and searches, then pings."""
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    gen = Synth(seed)
    pidfile = work / f"{tag}.pid"
    saves: list[float] = []
    searches: list[float] = []
    pings: list[float] = []
    pause = args.pause_ms / 1000
    with (work / f"{tag}.err").open("w") as errlog:
        async with client_for(home, pidfile, errlog) as client:
            pid = read_pid(pidfile)

            async def save(timed: list[float] | None) -> None:
                await timed_save(client, gen, PROJECT, timed)

            async def search(timed: list[float] | None) -> None:
                await timed_search(client, gen, PROJECT, timed)

            for _ in range(args.warmup):
                await search(None)
                await save(None)
            spy = spy_start(pid, profile, args.profile_rate) if profile else None
            cpu_before, machine_before, wall_before = cpu_seconds(pid), MachineCpu.now(), time.perf_counter()
            for _ in range(args.ops):
                await asyncio.sleep(pause)
                await save(saves)
                await asyncio.sleep(pause)
                await search(searches)
            cpu_ops = cpu_seconds(pid) - cpu_before
            machine_busy = MachineCpu.now().busy_cores_since(machine_before)
            wall = time.perf_counter() - wall_before
            spy_stop(spy)
            if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:  # no ping in 2026-07-28
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "ping is removed as of 2026-07-28": not used there
                    for _ in range(args.ops):
                        await asyncio.sleep(pause)
                        t = time.perf_counter()
                        await client.send_ping()
                        pings.append(time.perf_counter() - t)
            mem = memory_mb(pid)
    return {
        "save": summary_ms(saves),
        "search": summary_ms(searches),
        "ping": summary_ms(pings),
        "server_cpu_ms_per_op": round(cpu_ops * 1000 / (2 * args.ops), 2),
        "server_busy_cores": round(cpu_ops / wall, 2),
        "machine_busy_cores": round(machine_busy, 2),
        **mem,
    }


# -- the same calls on the wire ----------------------------------------------------------------


class WireClient:
    """A bare JSON-RPC client on a server's pipes: writes a request line, reads lines until the
    answer. It times the server's part of a call plus the two pipe hops."""

    def __init__(self, home: Path, pidfile: Path, errlog: Any) -> None:
        from mcp_types.version import LATEST_HANDSHAKE_VERSION

        self.proc = subprocess.Popen(server_command(pidfile), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=errlog, env=server_env(home), cwd=REPO_ROOT)
        self._last_id = 0
        self.call("initialize", {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {},
                                 "clientInfo": {"name": "bench-wire", "version": "0"}})
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def call(self, method: str, params: dict[str, Any] | None = None) -> tuple[dict[str, Any], float]:
        """The result of one request and its round trip in seconds; a JSON-RPC or tool error raises."""
        assert self.proc.stdout is not None
        self._last_id += 1
        request = {"jsonrpc": "2.0", "id": self._last_id, "method": method, **({"params": params} if params else {})}
        started = time.perf_counter()
        self._send(request)
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"server closed stdout during {method}")
            answer = json.loads(line)
            if answer.get("id") == self._last_id:
                break
        elapsed = time.perf_counter() - started
        if "error" in answer or answer["result"].get("isError"):
            raise RuntimeError(f"{method} failed: {answer}")
        return answer["result"], elapsed

    def tool(self, name: str, arguments: dict[str, Any]) -> tuple[dict[str, Any], float]:
        result, elapsed = self.call("tools/call", {"name": name, "arguments": arguments})
        return result["structuredContent"], elapsed

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def mix_plan(args: argparse.Namespace, seed: int) -> list[dict[str, Any]]:
    """The calls of a wire or TypeScript round, each ``--pause-ms`` after the last: a save, a
    search and a ping, ``--warmup`` + ``--ops`` times (the first ``--warmup`` untimed). The mix of
    ``latency_round``, which times its pings after the saves and searches instead."""
    gen = Synth(seed)
    steps: list[dict[str, Any]] = []
    pause = args.pause_ms / 1000
    for i in range(args.warmup + args.ops):
        content, tags, importance = gen.memory()
        timed = i >= args.warmup
        steps += [
            {"op": "save", "tool": "save_context", "pause_s": pause, "timed": timed,
             "arguments": {"content": content, "tags": tags, "importance_level": importance, "project_id": PROJECT}},
            {"op": "search", "tool": "search_contexts", "pause_s": pause, "timed": timed,
             "arguments": {"query": gen.query(), "project_id": PROJECT}},
            {"op": "ping", "tool": None, "pause_s": pause, "timed": timed},
        ]
    return steps


def plan_summary(steps: list[dict[str, Any]], answers: list[tuple[dict[str, Any] | None, float]]) -> dict[str, Any]:
    """p50/p95 of each op of a ``mix_plan`` from its (structured answer, seconds) pairs, after
    checking that every save created its memory and every search found something by meaning."""
    timed: dict[str, list[float]] = {"save": [], "search": [], "ping": []}
    for step, (answer, seconds) in zip(steps, answers, strict=True):
        if step["op"] == "save" and not (answer or {}).get("created"):
            raise RuntimeError(f"a save did not create its memory: {answer}")
        if step["op"] == "search" and (not answer or answer["mode"] != "hybrid" or not answer["results"]):
            raise RuntimeError(f"unexpected search answer: {answer}")
        if step["timed"]:
            timed[step["op"]].append(seconds)
    return {name: summary_ms(values) for name, values in timed.items()}


def plan_rounds_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of ``plan_summary`` and the median of each op's p50 and p95 over them."""
    return {"rounds": rounds, **{f"{op}_{q}_ms": median(x[op][f"{q}_ms"] for x in rounds)
                                 for op in ("save", "search", "ping") for q in ("p50", "p95")}}


def wire_round(home: Path, work: Path, tag: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """A ``mix_plan`` from a ``WireClient``."""
    steps = mix_plan(args, seed)
    answers: list[tuple[dict[str, Any] | None, float]] = []
    with (work / f"{tag}.err").open("w") as errlog:
        client = WireClient(home, work / f"{tag}.pid", errlog)
        try:
            client.call("tools/list")
            for step in steps:
                time.sleep(step["pause_s"])
                answers.append(client.tool(step["tool"], step["arguments"]) if step["tool"] else (None, client.call("ping")[1]))
        finally:
            client.close()
    return plan_summary(steps, answers)


TS_CLIENT = Path(__file__).resolve().parent / "ts_client"


def ts_client_ready() -> str | None:
    """None if the TypeScript SDK client can run (installing it with ``npm ci`` from its lock
    file the first time), else why not."""
    if not (shutil.which("node") and shutil.which("npm")):
        return "node and npm are not on PATH"
    if not (TS_CLIENT / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=TS_CLIENT, capture_output=True, text=True)
        if done.returncode != 0:
            return f"npm ci in {TS_CLIENT} failed: {done.stderr.strip()[-500:]}"
    return None


def ts_round(home: Path, work: Path, tag: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """A ``mix_plan`` through the official TypeScript MCP SDK client (tools/ts_client/drive.mjs)."""
    steps = mix_plan(args, seed)
    command, *command_args = server_command(work / f"{tag}.pid")
    plan = work / f"{tag}.plan.json"
    plan.write_text(json.dumps({"command": command, "args": command_args, "env": server_env(home),
                                "cwd": str(REPO_ROOT), "steps": steps}))
    with (work / f"{tag}.err").open("w") as errlog:
        done = subprocess.run(["node", str(TS_CLIENT / "drive.mjs"), str(plan)], cwd=TS_CLIENT, stdout=subprocess.PIPE,
                              stderr=errlog, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the TypeScript client failed ({done.returncode}): see {work / f'{tag}.err'}")
    answers = [(a["structured"], a["seconds"]) for a in json.loads(done.stdout.strip().splitlines()[-1])]
    return plan_summary(steps, answers)


def inprocess_round(home: Path, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The same save/search mix through ``MemoryService`` in this process: no MCP, no pipes."""
    from mcp_server.service import MemoryService
    from mcp_server.settings import load_settings

    gen = Synth(seed)
    service = MemoryService(load_settings({"MNEMOLOG_HOME": str(home)}))
    saves: list[float] = []
    searches: list[float] = []
    pause = args.pause_ms / 1000
    try:
        for i in range(args.warmup + args.ops):
            content, tags, importance = gen.memory()
            time.sleep(pause)
            t = time.perf_counter()
            service.save(content, importance=importance, tags=tags, project=PROJECT)
            if i >= args.warmup:
                saves.append(time.perf_counter() - t)
            query = gen.query()
            time.sleep(pause)
            t = time.perf_counter()
            service.search(query, project=PROJECT)
            if i >= args.warmup:
                searches.append(time.perf_counter() - t)
    finally:
        service.close()
    return {"save": summary_ms(saves), "search": summary_ms(searches)}


# where the time goes: py-spy, every Python thread of the server --------------------------

# (category, substrings of a frame): a sample counts for the first category met walking from
# the innermost frame outwards, so "inference" wins over the catch-up that called it.
CATEGORIES = [
    ("MiniLM inference (onnxruntime session.run)", ("_infer (",)),
    ("tokenizer", ("encode_batch", "tokenizers")),
    ("embedding cache (SQLite)", ("embed_cache.py",)),
    ("fdatasync of the log", ("_sync (writer.py", "_sync_dir (")),
    ("projection: events -> index rows (SQLite)", ("apply.py", "runner.py", "tracking.py", "plan.py")),
    ("search: SQL candidates, fusion, fetch", ("hybrid.py", "query.py", "search.py")),
    ("index: open, catch-up checks, get", ("index.py", "vectors.py", "db.py")),
    ("event log: build, lock, write", ("eventlog/", "store.py", "writer.py", "lock.py", "codec.py", "validate.py")),
    ("service layer", ("service.py",)),
    ("pydantic (validate / serialize)", ("pydantic",)),
    ("MCP SDK (JSON-RPC, dispatch, stdio)", ("mcp/", "mcp_types", "app.py")),
    ("event loop, threads, queues", ("asyncio", "anyio", "threading.py", "concurrent/", "selectors.py", "queue.py")),
]


# Innermost frames where a thread waits (poll, lock, queue, inotify): py-spy's idle detection
# lets some of these through as busy; they are counted apart, not as work.
WAITS = ("EpollSelector.select", "Condition.wait", "_worker (concurrent/futures/thread.py", "WorkerThread.run",
         "_check_inotify_fd", "Event.wait", "Thread._wait_for_tstate_lock", "_write_to_self")


def spy_start(pid: int, out: Path, rate: int) -> Any:
    """py-spy sampling every Python thread of ``pid`` (without pausing it), or None if absent."""
    import subprocess

    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("py-spy not found (pip install py-spy): no profile", file=sys.stderr)
        return None
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--output", str(out), "--threads",
                             "--nonblocking", "--rate", str(rate)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def spy_stop(spy: Any) -> None:
    import signal

    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.communicate(timeout=60)


def breakdown(raw: Path, rate: int, calls: int) -> dict[str, Any]:
    """Samples of a py-spy raw file as ms per call: by thread, by category, and for the worker
    thread's saves and searches apart (``calls`` of each kind were timed)."""
    by_category: dict[str, int] = {}
    by_thread: dict[str, int] = {}
    by_op: dict[str, dict[str, int]] = {"save": {}, "search": {}}
    leaves: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1] if frames[0].startswith("thread") else "?"
        thread = "worker" if thread.startswith("mnemolog-worker") else ("main" if thread == "MainThread" else "other")
        if any(w in frames[-1] for w in WAITS):
            category = "waiting (poll, lock, queue)"
        else:
            category = next((name for frame in reversed(frames[1:]) for name, marks in CATEGORIES
                             if any(m in frame for m in marks)), "other")
        by_category[category] = by_category.get(category, 0) + count
        by_thread[thread] = by_thread.get(thread, 0) + count
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + count
        op = next((name for name in ("save", "search") if any(f"MemoryService.{name} " in f for f in frames)), None)
        if op is not None:
            by_op[op][category] = by_op[op].get(category, 0) + count

    def ms(counts: dict[str, int], per: int) -> dict[str, float]:
        ordered = sorted(counts.items(), key=lambda kv: -kv[1])
        return {k: round(v * 1000 / rate / max(per, 1), 2) for k, v in ordered}

    return {
        "samples": sum(by_thread.values()),
        "rate_hz": rate,
        "note": "on-CPU samples of the server's Python threads during the timed calls (py-spy, not idle); "
                "ms = samples / rate / calls",
        "worker_ms_per_save": {"total": round(sum(by_op["save"].values()) * 2000 / rate / max(calls, 1), 2),
                               **ms(by_op["save"], calls // 2)},
        "worker_ms_per_search": {"total": round(sum(by_op["search"].values()) * 2000 / rate / max(calls, 1), 2),
                                 **ms(by_op["search"], calls // 2)},
        "all_threads_ms_per_call_by_category": ms(by_category, calls),
        "ms_per_call_by_thread": ms(by_thread, calls),
        "top_leaf_frames_ms_per_call": dict(list(ms(leaves, calls).items())[:15]),
    }


# -- the run -------------------------------------------------------------------------------


def base_store(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The store every server gets a copy of: ``--memories`` synthetic ones written and indexed
    here, or a copy of ``--store`` (which must hold that many in project ``bench``)."""
    if args.store is None:
        return populate(base, PROJECT, args.memories)
    seconds = copy_store(args.store, base)
    held = indexed_memories(base, PROJECT)
    if held != args.memories:
        raise SystemExit(f"{args.store} holds {held} memories of project {PROJECT!r}, not --memories {args.memories}")
    return {"copied_from": str(args.store), "catch_up_s": round(seconds, 2)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="mnemolog-bench-server-", dir=args.dir))
    work = root / "work"
    work.mkdir()
    result: dict[str, Any] = {"machine": machine(), "command": " ".join(["python", *sys.argv]),
                              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    try:
        base = root / "base"
        print(f"populating {args.memories} memories ...", file=sys.stderr)
        result["populate"] = base_store(base, args)

        cold: dict[str, list[dict[str, Any]]] = {"empty": [], "populated": []}
        for i in range(args.cold_runs):  # alternate the two kinds, so the machine's load hits both
            print(f"cold start {i + 1}/{args.cold_runs} ...", file=sys.stderr)
            wait_for_quiet(args.wait_quiet)
            cold["empty"].append(asyncio.run(cold_start(root / f"empty{i}", work, f"cold-empty{i}",
                                                        "why did we choose SQLite")))
            home = root / f"cold{i}"
            copy_store(base, home)
            wait_for_quiet(args.wait_quiet)
            cold["populated"].append(asyncio.run(cold_start(home, work, f"cold-populated{i}",
                                                            "why did we choose SQLite")))
        result["cold_start"] = {
            kind: {"runs": runs, **{key: median(r[key] for r in runs) for key in (
                "initialized_s", "tools_list_s", "first_search_s", "rss_after_list_mb",
                "peak_rss_after_search_mb")}}
            for kind, runs in cold.items()
        }

        rounds, wire, ts, inproc = [], [], [], []
        ts_skipped = ts_client_ready() if args.ts else "--no-ts"
        if ts_skipped:
            print(f"no rounds through the TypeScript SDK client: {ts_skipped}", file=sys.stderr)
            result["ts_sdk_skipped"] = ts_skipped
        def fresh_copy(name: str) -> Path:
            """A new copy of the base store for one round, once the machine is quiet."""
            home = root / name
            copy_store(base, home)
            wait_for_quiet(args.wait_quiet)
            return home

        for r in range(args.rounds):
            print(f"latency round {r + 1}/{args.rounds} ...", file=sys.stderr)
            rounds.append(asyncio.run(latency_round(fresh_copy(f"lat{r}"), work, f"lat{r}", args, seed=11 + r)))
            if args.wire:
                wire.append(wire_round(fresh_copy(f"wire{r}"), work, f"wire{r}", args, seed=11 + r))
            if ts_skipped is None:
                ts.append(ts_round(fresh_copy(f"ts{r}"), work, f"ts{r}", args, seed=11 + r))
            if args.inprocess:
                inproc.append(inprocess_round(fresh_copy(f"inproc{r}"), args, seed=31 + r))
        result["stdio"] = {
            "rounds": rounds,
            "save_p50_ms": median(x["save"]["p50_ms"] for x in rounds),
            "save_p95_ms": median(x["save"]["p95_ms"] for x in rounds),
            "search_p50_ms": median(x["search"]["p50_ms"] for x in rounds),
            "search_p95_ms": median(x["search"]["p95_ms"] for x in rounds),
            "ping_p50_ms": median(x["ping"]["p50_ms"] for x in rounds),
            "server_cpu_ms_per_op": median(x["server_cpu_ms_per_op"] for x in rounds),
            "peak_rss_mb": median(x["peak_rss_mb"] for x in rounds),
            "machine_busy_cores": median(x["machine_busy_cores"] for x in rounds),
            "rss_mb": median(x["rss_mb"] for x in rounds),
        }
        if wire:
            result["wire"] = plan_rounds_summary(wire)
        if ts:
            result["ts_sdk"] = plan_rounds_summary(ts)
        if inproc:
            result["in_process"] = {
                "rounds": inproc,
                "save_p50_ms": median(x["save"]["p50_ms"] for x in inproc),
                "save_p95_ms": median(x["save"]["p95_ms"] for x in inproc),
                "search_p50_ms": median(x["search"]["p50_ms"] for x in inproc),
                "search_p95_ms": median(x["search"]["p95_ms"] for x in inproc),
            }

        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            home = root / "profiled"
            copy_store(base, home)
            raw = args.profile / "server-pyspy.txt"
            print(f"profiled round (py-spy) -> {raw} ...", file=sys.stderr)
            result["profiled_round"] = asyncio.run(latency_round(home, work, "profiled", args, seed=51, profile=raw))
            if raw.exists():
                result["profiled_round"]["where_the_time_goes"] = breakdown(raw, args.profile_rate, 2 * args.ops)
        result["goals"] = goals(result)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return result


def goals(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cold, stdio = result["cold_start"], result["stdio"]
    measured = {
        "tools_list_s": max(cold["empty"]["tools_list_s"], cold["populated"]["tools_list_s"]),
        "save_p50_ms": stdio["save_p50_ms"],
        "search_p50_ms": stdio["search_p50_ms"],
        "peak_rss_mb": stdio["peak_rss_mb"],
    }
    return {k: {"goal": GOALS[k], "measured": v, "met": v <= GOALS[k]} for k, v in measured.items()}


def markdown(result: dict[str, Any]) -> str:
    cold, stdio, g = result["cold_start"], result["stdio"], result["goals"]
    n = result["settings"]["memories"]
    ok = {k: ("met" if v["met"] else "**missed**") for k, v in g.items()}
    lines = [
        "| Measure | Median | Goal |",
        "|---|---|---|",
        f"| spawn → initialized, empty store / {n}-memory store | {cold['empty']['initialized_s']:.2f} s / "
        f"{cold['populated']['initialized_s']:.2f} s | |",
        f"| spawn → `tools/list` answered, empty / {n} | {cold['empty']['tools_list_s']:.2f} s / "
        f"{cold['populated']['tools_list_s']:.2f} s | ≤ 1 s: {ok['tools_list_s']} |",
        f"| spawn → first search answered, empty / {n} | {cold['empty']['first_search_s']:.2f} s / "
        f"{cold['populated']['first_search_s']:.2f} s | |",
        f"| save over stdio, p50 / p95 ({n} memories) | {stdio['save_p50_ms']:.1f} / {stdio['save_p95_ms']:.1f} ms "
        f"| p50 ≤ 5 ms: {ok['save_p50_ms']} |",
        f"| search over stdio, p50 / p95 ({n} memories) | {stdio['search_p50_ms']:.1f} / "
        f"{stdio['search_p95_ms']:.1f} ms | p50 ≤ 10 ms: {ok['search_p50_ms']} |",
        f"| ping round trip over stdio (the transport's floor), p50 | {stdio['ping_p50_ms']:.2f} ms | |",
        f"| server CPU per call (save+search mix) | {stdio['server_cpu_ms_per_op']:.1f} ms | |",
        f"| whole machine busy during the timed calls (2 = both cores) | {stdio['machine_busy_cores']:.2f} cores | |",
    ]
    if "wire" in result:
        w = result["wire"]
        lines.append(f"| same calls from a bare JSON-RPC client (the server's part), save / search / ping p50 | "
                     f"{w['save_p50_ms']:.1f} / {w['search_p50_ms']:.1f} / {w['ping_p50_ms']:.2f} ms | |")
    if "ts_sdk" in result:
        t = result["ts_sdk"]
        lines.append(f"| same calls through the TypeScript SDK client (Claude Code's and Claude Desktop's), "
                     f"save / search / ping p50 | {t['save_p50_ms']:.1f} / {t['search_p50_ms']:.1f} / "
                     f"{t['ping_p50_ms']:.2f} ms | |")
    if "in_process" in result:
        ip = result["in_process"]
        lines.append(f"| same calls in-process (`MemoryService`, no MCP), save / search p50 | "
                     f"{ip['save_p50_ms']:.1f} / {ip['search_p50_ms']:.1f} ms | |")
    lines += [
        f"| RSS after `tools/list` (model not loaded), empty / {n} | {cold['empty']['rss_after_list_mb']:.0f} / "
        f"{cold['populated']['rss_after_list_mb']:.0f} MB | |",
        f"| peak RSS (VmHWM) after the first search, empty / {n} | "
        f"{cold['empty']['peak_rss_after_search_mb']:.0f} / {cold['populated']['peak_rss_after_search_mb']:.0f} MB | |",
        f"| peak RSS (VmHWM) / RSS after {result['settings']['ops']} saves + searches | "
        f"{stdio['peak_rss_mb']:.0f} / {stdio['rss_mb']:.0f} MB | ≤ 200 MB: {ok['peak_rss_mb']} |",
    ]
    profile = result.get("profiled_round", {}).get("where_the_time_goes")
    if profile:
        lines += ["", "Where a call's time goes on the server's worker thread (py-spy, on-CPU ms per call):", "",
                  "| Call | Total | Parts |", "|---|---|---|"]
        for op in ("save", "search"):
            parts = dict(profile[f"worker_ms_per_{op}"])
            total = parts.pop("total")
            shown = ", ".join(f"{k} {v:.1f}" for k, v in parts.items() if v >= 0.1)
            lines.append(f"| {op} | {total:.1f} ms | {shown} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memories", type=int, default=1000, help="memories in the project (default 1000)")
    parser.add_argument("--store", type=Path, metavar="DIR",
                        help="copy this store (e.g. one of tools/bench_projector.py's --store-dir) instead of "
                             "writing and indexing --memories new ones; it must hold --memories in project 'bench'")
    parser.add_argument("--cold-runs", type=int, default=5, help="cold starts of each kind (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds, a fresh server each (default 3)")
    parser.add_argument("--ops", type=int, default=200, help="timed saves, and searches, per round (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed saves and searches first (default 5)")
    parser.add_argument("--pause-ms", type=float, default=100.0,
                        help="pause before each call, like an assistant between tool calls (default 100)")
    parser.add_argument("--no-wire", dest="wire", action="store_false",
                        help="skip the rounds from a bare JSON-RPC client")
    parser.add_argument("--no-ts", dest="ts", action="store_false",
                        help="skip the rounds through the TypeScript SDK client (run when node and npm are found)")
    parser.add_argument("--no-inprocess", dest="inprocess", action="store_false",
                        help="skip the in-process MemoryService comparison")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also run one round with py-spy sampling the server (pip install py-spy); raw "
                             "stacks in DIR/server-pyspy.txt, a breakdown by category in the JSON")
    parser.add_argument("--profile-rate", type=int, default=500, help="py-spy samples per second (default 500)")
    parser.add_argument("--mode", default="legacy", choices=["legacy", "auto"],
                        help="client handshake: 'legacy' = initialize, as Claude Desktop and Claude Code "
                             "connect (default); 'auto' = the SDK's server/discover probe (2026-07-28)")
    parser.add_argument("--wait-quiet", type=float, default=60.0, metavar="S",
                        help="before each measurement, wait up to S seconds for the machine's other load to "
                             "drop below half a core (default 60; 0: do not wait)")
    parser.add_argument("--dir", help="where the temporary stores go (default: the system temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary stores and server logs")
    parser.add_argument("--json", type=Path, help="also write the JSON result here")
    args = parser.parse_args()
    global MODE
    MODE = args.mode
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    print()
    print(markdown(result))
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
