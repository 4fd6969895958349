"""Small measurements behind the search's design choices (BENCHMARKS.md cites each command).

Run from a checkout with the project's Python, on a store that ``bench_projector.py
--store-dir DIR`` left behind (``DIR/store-N``: one project ``bench``, indexed, its embedding
cache full):

    python tools/probe_search.py gaps DIR/store-1000        # search latency vs pause between calls
    python tools/probe_search.py oversample DIR/store-10000 # vector candidates vs exact cosine
    python tools/probe_search.py cache DIR/store-10000      # embedding-cache lookup and write cost
    python tools/probe_search.py threads                    # onnxruntime intra-op threads, 1 vs 2
    python tools/probe_search.py raw-stdio [--server-repo DIR]  # the server without an SDK client

Every probe uses the real MiniLM embedder and queries from tools/synth.py that the process has
not seen before; medians are reported. The machine's other load shows up in the numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
sys.path[:0] = [str(TOOLS.parent), str(TOOLS)]

from synth import Synth  # noqa: E402  (after the sys.path line, on purpose)

PROJECT = "bench"


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def timed(fn: Callable[[], Any], into: list[float]) -> Any:
    started = time.perf_counter()
    value = fn()
    into.append(time.perf_counter() - started)
    return value


def open_index(store: Path) -> Any:
    from eventlog import EventLog
    from projector import Index
    from projector.embed import OnnxMiniLM

    index = Index(EventLog(store), OnnxMiniLM(), cache_path=store / "cache" / "embeddings.db")
    index.search("warm up", project=PROJECT)  # load the model, open and catch up the index
    return index


def probe_gaps(store: Path, per_gap: int) -> None:
    """Search, and the query embedding alone, with the process idle for a while before each."""
    index, queries = open_index(store), iter(Synth(9).queries(8 * per_gap))
    for gap in (0.0, 0.005, 0.02, 0.1):
        searches: list[float] = []
        embeddings: list[float] = []
        for _ in range(per_gap):
            time.sleep(gap)
            timed(lambda: index.search(next(queries), project=PROJECT), searches)
            time.sleep(gap)
            timed(lambda: index._embed([next(queries)], cached=False), embeddings)
        print(f"{gap * 1000:5.0f} ms apart: search p50 {median_ms(searches)} ms, "
              f"query embedding alone p50 {median_ms(embeddings)} ms")
    index.close()


def probe_oversample(store: Path, count: int) -> None:
    """How many of the exact-cosine top 10 / top 100 the vector candidates hold, and their cost."""
    from projector import hybrid, query

    index = open_index(store)
    conn, filters = index._connection(), query.Filters(PROJECT)
    exact_sql = (
        "SELECT e.rowid, 1.0 - vec_distance_cosine(e.vector, ?) AS s FROM memory_embedding e "
        "JOIN memory m ON m.rowid = e.rowid WHERE m.project = ? AND m.present = 1 ORDER BY s DESC, e.rowid LIMIT 100"
    )
    found: dict[int, tuple[list[float], list[float], list[float]]] = {o: ([], [], []) for o in (1, 2, 4)}
    for text in Synth(777).queries(count):
        vector = index._embed([text], cached=False)[0]
        exact = [row[0] for row in conn.execute(exact_sql, (vector, PROJECT))]
        for oversample, (top10, top100, seconds) in found.items():
            got = list(timed(lambda: hybrid._vector_candidates(conn, vector, filters, 100, oversample), seconds))
            top10.append(len(set(got[:10]) & set(exact[:10])) / 10)
            top100.append(len(set(got) & set(exact)) / 100)
    for oversample, (top10, top100, seconds) in found.items():
        print(f"oversample {oversample}: top-10 overlap {statistics.mean(top10):.3f}, "
              f"top-100 overlap {statistics.mean(top100):.3f}, p50 {median_ms(seconds)} ms")
    index.close()


def probe_cache(store: Path, count: int) -> None:
    """A lookup (a miss) and a write of one vector, in this store's cache and in an empty one."""
    from projector.embed import OnnxMiniLM
    from projector.embed_cache import EmbeddingCache

    model = OnnxMiniLM()
    texts = Synth(5).queries(count)
    vectors = model.embed(texts)
    with tempfile.TemporaryDirectory() as empty:
        for label, path in (("this store's cache", store / "cache" / "embeddings.db"),
                            ("an empty cache", Path(empty) / "embeddings.db")):
            cache, gets, puts = EmbeddingCache(path), [], []
            for i, text in enumerate(texts):
                key = f"{text} (probe {label})"
                timed(lambda: cache.get_many(model.model_id, [key]), gets)
                timed(lambda: cache.put_many(model.model_id, [key], vectors[i : i + 1]), puts)
            cache.close()
            print(f"{label}: lookup p50 {median_ms(gets)} ms, write p50 {median_ms(puts)} ms")
    print("(this store's cache keeps the probe's vectors: harmless, they are never looked up again)")


def probe_threads(count: int) -> None:
    """One query and one memory embedded with 1 and with 2 intra-op threads, alternating."""
    from projector.embed import OnnxMiniLM

    synth = Synth(3)
    queries = [synth.query() for _ in range(count)]
    memories = [synth.memory()[0] for _ in range(count)]
    models = {threads: OnnxMiniLM(threads=threads) for threads in (1, 2)}
    times: dict[tuple[int, str], list[float]] = {(t, kind): [] for t in models for kind in ("query", "memory")}
    for model in models.values():
        model.embed(["warm up"])
    for i in range(count):
        for threads in ((1, 2) if i % 2 else (2, 1)):
            timed(lambda: models[threads].embed([queries[i]]), times[(threads, "query")])
            timed(lambda: models[threads].embed([memories[i]]), times[(threads, "memory")])
    for threads in models:
        print(f"{threads} thread(s): query p50 {median_ms(times[(threads, 'query')])} ms, "
              f"memory p50 {median_ms(times[(threads, 'memory')])} ms")


def probe_raw_stdio(server_repo: Path, count: int) -> None:
    """``mnemolog serve`` from ``server_repo`` (another checkout: another commit) over its pipes,
    driven by hand-written JSON-RPC instead of the SDK's client: 1,000 saves, then ``count``
    rounds of a ping, a save and a search, 50 ms apart."""
    import json
    import os
    import subprocess

    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMOLOG_")}
        env.update(MNEMOLOG_HOME=home, PYTHONPATH=str(server_repo))
        server = subprocess.Popen([sys.executable, "-m", "mcp_server", "serve"], cwd=server_repo, env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert server.stdin is not None and server.stdout is not None
        ids = iter(range(1, 10**9))

        def call(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
            request: dict[str, Any] = {"jsonrpc": "2.0", "id": next(ids), "method": method}
            if params is not None:
                request["params"] = params
            server.stdin.write(json.dumps(request).encode() + b"\n")  # type: ignore[union-attr]
            server.stdin.flush()  # type: ignore[union-attr]
            while True:
                answer: dict[str, Any] = json.loads(server.stdout.readline())  # type: ignore[union-attr]
                if answer.get("id") == request["id"]:
                    return answer

        def tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
            result: dict[str, Any] = call("tools/call", {"name": name, "arguments": arguments})["result"]
            assert not result.get("isError"), result
            return result

        call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                            "clientInfo": {"name": "probe", "version": "0"}})
        server.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        synth = Synth(1)

        def save() -> None:
            content, tags, importance = synth.memory()
            tool("save_context", {"content": content, "tags": tags, "importance_level": importance,
                                  "project_id": PROJECT})

        for _ in range(1000):
            save()
        tool("search_contexts", {"query": "warm up", "project_id": PROJECT})  # indexes the 1,000
        times: dict[str, list[float]] = {"ping": [], "save": [], "search": []}
        for _ in range(count):
            for kind, step in (("ping", lambda: call("ping")), ("save", save),
                               ("search", lambda: tool("search_contexts", {"query": synth.query(), "project_id": PROJECT}))):
                time.sleep(0.05)
                timed(step, times[kind])
        server.stdin.close()
        server.wait(timeout=60)
    print(", ".join(f"{kind} p50 {median_ms(values)} ms" for kind, values in times.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probe", choices=["gaps", "oversample", "cache", "threads", "raw-stdio"])
    parser.add_argument("store", type=Path, nargs="?", help="a bench_projector store (not for 'threads')")
    parser.add_argument("--count", type=int, default=None,
                        help="queries per step (defaults: gaps 80, oversample 60, cache 300, threads 300, "
                             "raw-stdio 200)")
    parser.add_argument("--server-repo", type=Path, default=TOOLS.parent,
                        help="raw-stdio: the checkout whose server to start (default: this one)")
    args = parser.parse_args()
    if args.probe not in ("threads", "raw-stdio") and (args.store is None or not (args.store / "logs").is_dir()):
        parser.error(f"{args.probe} needs a store made by bench_projector.py --store-dir (DIR/store-N)")
    count = args.count or {"gaps": 80, "oversample": 60, "cache": 300, "threads": 300, "raw-stdio": 200}[args.probe]
    if args.probe == "gaps":
        probe_gaps(args.store, count)
    elif args.probe == "oversample":
        probe_oversample(args.store, count)
    elif args.probe == "cache":
        probe_cache(args.store, count)
    elif args.probe == "threads":
        probe_threads(count)
    else:
        probe_raw_stdio(args.server_repo.resolve(), count)


if __name__ == "__main__":
    main()
