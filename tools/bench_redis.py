"""The Redis backend next to the file backend, over real MCP stdio; and how long a save on one
machine takes to show on another.

Run from a checkout with the project's Python and a ``redis-server`` on the PATH:

    python tools/bench_redis.py                         # the numbers in BENCHMARKS.md
    python tools/bench_redis.py --ops 100 --rounds 1 --visibility 50 --memories 300

Starts its own ``redis-server`` processes on free loopback ports in a temporary directory (AOF
on, ``appendfsync always`` and ``everysec``; no RDB), and real ``python -m mcp_server serve``
children with the default settings (MiniLM embedder; files with durability ``always``), each
on a fresh copy of a store of ``--memories`` synthetic memories (tools/synth.py), already
indexed and embedded, so no timing includes building it. Measured:

- per backend (files; Redis with ``appendfsync always``; Redis with ``everysec``), ``--rounds``
  fresh servers: ``--ops`` saves and searches alternating ``--pause-ms`` apart after
  ``--warmup`` untimed ones; p50/p95 as the MCP client sees them;
- the backend alone: the same save/search mix through ``MemoryService`` in this process with
  no embedding model (keyword search), files next to Redis (``always``), and the Redis
  commands one save and one search send (``INFO commandstats``);
- visibility across machines: two servers on two data roots (two indexes) sharing one Redis
  (``always``). Server A saves; from A's acknowledgement, (1) the time until B's index holds
  the memory with no call made to B (B's background ``XREAD`` listener did it; read from
  ``index.db`` with a separate read-only connection), and (2) the time until a search sent to
  B right after the acknowledgement returns it (B's read-time catch-up). ``--visibility`` saves
  for each, ``--gap-ms`` apart.

Prints one JSON document. The machine's other load shows up in the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mcp_driver import machine, median, populate, server_env, structured, summary_ms, timed_save, timed_search  # noqa: E402
from synth import Synth  # noqa: E402

PROJECT = "bench"


# -- redis-server ------------------------------------------------------------------------------


class Redis:
    """A ``redis-server`` on a free loopback port, its AOF in ``directory``."""

    def __init__(self, directory: Path, appendfsync: str) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        directory.mkdir(parents=True)
        self.directory, self.appendfsync = directory, appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        self.proc = subprocess.Popen(
            [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", "--appendonly", "yes", "--appendfsync", self.appendfsync, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


# -- stores --------------------------------------------------------------------------------------


def load_into_redis(source: Path, home: Path, url: str, prefix: str) -> None:
    """The events of the file store ``source`` imported into Redis under ``prefix``, and an index
    for them under ``home`` (embeddings from ``source``'s cache: no inference)."""
    from eventlog import EventLog
    from eventlog.transfer import export_lines, import_lines
    from mcp_server.service import MemoryService
    from mcp_server.settings import load_settings

    home.mkdir(parents=True)
    shutil.copytree(source / "cache", home / "cache")
    settings = load_settings({"MNEMOLOG_HOME": str(home), "MNEMOLOG_STORAGE": url, "MNEMOLOG_REDIS_PREFIX": prefix})
    service = MemoryService(settings)
    try:
        import_lines(service.log, export_lines(EventLog(source)))
        service.index.catch_up()
    finally:
        service.close()


def index_from_redis(source: Path, home: Path, url: str, prefix: str) -> None:
    """An index under ``home`` of what Redis holds under ``prefix`` (embeddings from the cache
    of ``source``, which holds the same memories)."""
    from mcp_server.service import MemoryService
    from mcp_server.settings import load_settings

    home.mkdir(parents=True)
    shutil.copytree(source / "cache", home / "cache")
    service = MemoryService(load_settings({"MNEMOLOG_HOME": str(home), "MNEMOLOG_STORAGE": url,
                                           "MNEMOLOG_REDIS_PREFIX": prefix}))
    try:
        service.index.catch_up()
    finally:
        service.close()


def copy_files_store(source: Path, target: Path) -> None:
    """A copy of the file store with its index current (a copied log is a new file: rescanned
    once here, embeddings from the copied cache)."""
    import logging

    from mcp_server.service import MemoryService
    from mcp_server.settings import load_settings

    shutil.copytree(source, target)
    logging.getLogger("projector.runner").setLevel(logging.ERROR)
    service = MemoryService(load_settings({"MNEMOLOG_HOME": str(target)}))
    try:
        service.index.catch_up()
    finally:
        service.close()


# -- the servers ---------------------------------------------------------------------------------


@asynccontextmanager
async def serve(home: Path, errlog: Any, **env: str) -> AsyncIterator[Any]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_server", "serve"],
                                   env=server_env(home, **env), cwd=str(Path(__file__).resolve().parents[1]))
    async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=120) as client:
        yield client


async def latency_round(home: Path, work: Path, tag: str, args: argparse.Namespace, seed: int,
                        **env: str) -> dict[str, Any]:
    """One fresh server: warm-up, then alternating timed saves and searches."""
    gen = Synth(seed)
    saves: list[float] = []
    searches: list[float] = []
    pause = args.pause_ms / 1000
    with (work / f"{tag}.err").open("w") as errlog:
        async with serve(home, errlog, **env) as client:

            async def save(timed: list[float] | None) -> None:
                await timed_save(client, gen, PROJECT, timed)

            async def search(timed: list[float] | None) -> None:
                await timed_search(client, gen, PROJECT, timed)

            for _ in range(args.warmup):
                await search(None)
                await save(None)
            for _ in range(args.ops):
                await asyncio.sleep(pause)
                await save(saves)
                await asyncio.sleep(pause)
                await search(searches)
    return {"save": summary_ms(saves), "search": summary_ms(searches)}


def index_has(index_db: Path, memory_id: str) -> bool:
    """Whether ``index.db`` holds the memory, read without the projector (no catch-up)."""
    try:
        conn = sqlite3.connect(f"file:{index_db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return False
    try:
        row = conn.execute("SELECT 1 FROM memory WHERE memory_id = ? AND present = 1", (memory_id,)).fetchone()
        return row is not None
    except sqlite3.Error:
        return False
    finally:
        conn.close()


async def visibility(home_a: Path, home_b: Path, work: Path, args: argparse.Namespace, **env: str) -> dict[str, Any]:
    """Delays from A's acknowledged save to B having it: by B's listener alone, and at B's
    next search."""
    gen = Synth(99)
    listener: list[float] = []
    query: list[float] = []
    late: list[str] = []
    gap = args.gap_ms / 1000
    with (work / "vis-a.err").open("w") as err_a, (work / "vis-b.err").open("w") as err_b:
        async with serve(home_a, err_a, **env) as a, serve(home_b, err_b, **env) as b:
            for warm in range(5):  # both loaded (model, index, listener) before timing
                structured(await b.call_tool("search_contexts", {"query": gen.query(), "project_id": PROJECT}))
                structured(await a.call_tool("save_context", {"content": f"warm-up {warm} {time.time()}",
                                                              "project_id": PROJECT}))
            for n in range(2 * args.visibility):
                await asyncio.sleep(gap)
                token = f"vis{n}x{int(time.time() * 1000)}"
                content, tags, importance = gen.memory()
                out = structured(await a.call_tool("save_context", {
                    "content": f"{content} ({token})", "tags": tags, "importance_level": importance,
                    "project_id": PROJECT}))
                acked = time.perf_counter()
                if n % 2 == 0:  # B's listener only: no call to B
                    while not index_has(home_b / "index.db", out["id"]):
                        if time.perf_counter() - acked > 10:
                            late.append(token)
                            break
                        await asyncio.sleep(0.002)
                    listener.append(time.perf_counter() - acked)
                else:  # B is asked right away
                    while True:
                        found = structured(await b.call_tool("search_contexts", {"query": token, "project_id": PROJECT}))
                        if out["id"] in [r["id"] for r in found["results"]]:
                            break
                        if time.perf_counter() - acked > 10:
                            late.append(token)
                            break
                    query.append(time.perf_counter() - acked)
    return {"listener_only": summary_ms(listener), "next_search_on_b": summary_ms(query), "not_seen_in_10s": late}


def backend_alone(work: Path, args: argparse.Namespace, url: str) -> dict[str, Any]:
    """Saves and searches through ``MemoryService`` in this process, keyword only: what the log
    backend costs without the model and the protocol."""
    import redis

    from mcp_server.service import MemoryService
    from mcp_server.settings import load_settings

    out: dict[str, Any] = {}
    for name, env in (("files (fsync always)", {}),
                      ("redis (appendfsync always)", {"MNEMOLOG_STORAGE": url, "MNEMOLOG_REDIS_PREFIX": "alone:"})):
        gen = Synth(7)
        service = MemoryService(load_settings({"MNEMOLOG_HOME": str(work / f"alone-{len(out)}"),
                                               "MNEMOLOG_EMBEDDER": "none", **env}))
        client = redis.Redis.from_url(url)
        saves: list[float] = []
        searches: list[float] = []
        commands: dict[str, float] = {}
        try:
            for i in range(args.warmup + args.ops):
                if i == args.warmup:
                    client.config_resetstat()
                content, tags, importance = gen.memory()
                t = time.perf_counter()
                service.save(content, importance=importance, tags=tags, project=PROJECT)
                if i >= args.warmup:
                    saves.append(time.perf_counter() - t)
            if env:
                commands["per_save"] = _commands(client, args.ops)
            for i in range(args.warmup + args.ops):
                if i == args.warmup:
                    client.config_resetstat()
                query = gen.query()
                t = time.perf_counter()
                service.search(query, project=PROJECT)
                if i >= args.warmup:
                    searches.append(time.perf_counter() - t)
            if env:
                commands["per_search"] = _commands(client, args.ops)
        finally:
            service.close()
            client.close()
        out[name] = {"save": summary_ms(saves), "search": summary_ms(searches), **({"redis_commands": commands}
                                                                                   if commands else {})}
    return out


def _commands(client: Any, ops: int) -> dict[str, float]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): round(v["calls"] / ops, 2) for name, v in stats.items()
            if "resetstat" not in name}


# -- main ------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    base = work / "base"
    populate(base, PROJECT, args.memories)  # files, indexed and embedded once
    servers = {fsync: Redis(work / f"redis-{fsync}", fsync).start() for fsync in ("always", "everysec")}
    try:
        results: dict[str, Any] = {"files (fsync always)": [], "redis (appendfsync always)": [],
                                   "redis (appendfsync everysec)": []}
        for r in range(args.rounds):
            home = work / f"files-{r}"
            copy_files_store(base, home)
            results["files (fsync always)"].append(await latency_round(home, work, f"files-{r}", args, 10 + r))
            for fsync, server in servers.items():
                prefix = f"bench{r}:"
                home = work / f"redis-{fsync}-{r}"
                load_into_redis(base, home, server.url, prefix)
                results[f"redis (appendfsync {fsync})"].append(await latency_round(
                    home, work, f"redis-{fsync}-{r}", args, 10 + r,
                    MNEMOLOG_STORAGE=server.url, MNEMOLOG_REDIS_PREFIX=prefix))
        summary = {name: {"save_p50_ms": median(x["save"]["p50_ms"] for x in rounds),
                          "save_p95_ms": median(x["save"]["p95_ms"] for x in rounds),
                          "search_p50_ms": median(x["search"]["p50_ms"] for x in rounds),
                          "search_p95_ms": median(x["search"]["p95_ms"] for x in rounds)}
                   for name, rounds in results.items()}
        url = servers["always"].url
        alone = backend_alone(work, args, url)
        home_a, home_b = work / "machine-a", work / "machine-b"
        load_into_redis(base, home_a, url, "shared:")
        index_from_redis(base, home_b, url, "shared:")  # machine B: its own index of the same streams
        vis = await visibility(home_a, home_b, work, args, MNEMOLOG_STORAGE=url, MNEMOLOG_REDIS_PREFIX="shared:")
    finally:
        for server in servers.values():
            server.stop()
    return {"summary": summary, "visibility_a_to_b": vis, "backend_alone_no_model": alone, "rounds": results}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memories", type=int, default=1000, help="memories in the store before timing")
    parser.add_argument("--rounds", type=int, default=2, help="fresh servers per backend")
    parser.add_argument("--ops", type=int, default=150, help="timed saves (and as many searches) per round")
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--pause-ms", type=float, default=5.0, help="between two calls")
    parser.add_argument("--visibility", type=int, default=100, help="saves timed for each visibility mode")
    parser.add_argument("--gap-ms", type=float, default=150.0, help="between two visibility saves")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    about = {"machine": machine(), "command": " ".join(["python", "tools/bench_redis.py", *sys.argv[1:]]),
             "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        out = asyncio.run(run(args, Path(tmp)))
    about["seconds"] = round(time.perf_counter() - started, 1)
    json.dump({**about, **out}, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
