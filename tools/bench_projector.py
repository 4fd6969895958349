"""Benchmark of the projector (the read side): search latency, embedding and rebuild speed,
memory, and time to the first search result, at several store sizes.

Run from a checkout with the project's Python (nothing to install):

    python tools/bench_projector.py --sizes 1000,10000,100000     # the numbers in BENCHMARKS.md
    python tools/bench_projector.py --sizes 2000 --runs 1 --queries 100   # a quick look
    python tools/bench_projector.py --sizes 10000 --profile       # where a search's time goes

For each size N, a fresh store of N synthetic memories in one project (``tools/synth.py``,
written with durability ``never``, not timed) and, each in a fresh child process so that its
peak RSS (VmHWM) is its own:

- cold rebuild: ``Index.rebuild()`` with an empty embedding cache, so every memory is embedded
  (only for N <= ``--cold-max``; it also fills the cache the later steps use). Gives rebuild
  events/s (cold) and embeddings/s;
- warm rebuild, ``--runs`` times: ``Index.rebuild()`` with every embedding in the cache;
- keyword-only rebuild (no embedder): the parse + SQLite floor of a rebuild;
- search, ``--runs`` times: a process that opens the store, runs one search (time from spawn
  to that first result, model load included), then ``--queries`` more, each a query it has not
  embedded before (so the query's embedding is computed, not cached), ``limit=10``; p50/p95 of
  ``Index.search`` as called in-process;
- the same search loop with no embedder (keyword mode), for comparison.

Medians over runs are reported. The embedder is the real one (``make_embedder("minilm")``)
unless ``--embedder`` says otherwise. The machine's other load shows up in the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path[:0] = [str(REPO), str(TOOLS)]

PROJECT = "bench"
GOALS = {"search_p50_ms@10000": 10.0, "search_p50_ms@100000": 25.0, "rebuild_warm_eps": 5000.0,
         "search_rss_mb@100000": 250.0}


# -- the child processes ---------------------------------------------------------------------


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _make_embedder(kind: str) -> Any:
    if kind == "none":
        return None
    if kind == "fake":
        sys.path.insert(0, str(REPO / "tests" / "projector"))
        from _projector_support import FakeEmbedder

        return FakeEmbedder("fake-bench", 384)
    from projector.embed import make_embedder

    return make_embedder(kind)


def child_rebuild(root: str, cache: str, embedder_kind: str) -> dict[str, Any]:
    from eventlog import EventLog
    from projector import Index

    embedder = _make_embedder(embedder_kind)
    index = Index(EventLog(root), embedder, cache_path=Path(cache))
    started = time.perf_counter()
    applied = index.rebuild()
    seconds = time.perf_counter() - started
    index.close()
    return {"events": applied, "seconds": seconds, "rss_mb": _vm_hwm_mb()}


def _fresh_cache(root: str) -> Path:
    """An empty embedding cache for a searching child: every query is embedded by the model,
    as a query never asked before is (the memories' vectors are in the index already)."""
    path = Path(tempfile.mkdtemp(prefix="query-cache-", dir=root)) / "embeddings.db"
    return path


def _close_and_drop_cache(index: Any) -> None:
    """Close a searching child's index and remove its ``_fresh_cache`` directory from the store."""
    index.close()
    shutil.rmtree(index._cache_path.parent, ignore_errors=True)


def child_search(root: str, embedder_kind: str, queries_seed: int, count: int, spawned_at: float) -> dict[str, Any]:
    from synth import Synth

    imported = time.time()
    from eventlog import EventLog
    from projector import Index

    queries = Synth(queries_seed).queries(count + 1)
    index = Index(EventLog(root), _make_embedder(embedder_kind), cache_path=_fresh_cache(root))
    first = index.search(queries[0], project=PROJECT, limit=10)
    first_at = time.time()
    print("first", flush=True)
    latencies = []
    modes = set()
    for q in queries[1:]:
        t = time.perf_counter()
        result = index.search(q, project=PROJECT, limit=10)
        latencies.append((time.perf_counter() - t) * 1000)
        modes.add(result.mode)
    latencies.sort()
    _close_and_drop_cache(index)
    return {
        "first_result_s": first_at - spawned_at, "python_start_s": imported - spawned_at,
        "first_hits": len(first.hits), "modes": sorted(modes),
        "p50_ms": statistics.median(latencies), "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
        "rss_mb": _vm_hwm_mb(),
    }


def child_breakdown(root: str, embedder_kind: str, queries_seed: int, count: int) -> dict[str, Any]:
    """Where a hybrid search's time goes: each step of ``hybrid_search`` timed on its own
    (median ms over ``count`` queries not embedded before). In a search the keyword step and
    the query embedding run at once, on two threads."""
    from synth import Synth

    from eventlog import EventLog
    from projector import Index, hybrid, query
    from projector.search import keyword_terms

    queries = Synth(queries_seed).queries(count + 1)
    index = Index(EventLog(root), _make_embedder(embedder_kind), cache_path=_fresh_cache(root))
    index.search(queries[0], project=PROJECT)  # load the model, open the index
    conn, filters = index._connection(), query.Filters(PROJECT)
    steps: dict[str, list[float]] = {}

    def timed(name: str, fn: Any) -> Any:
        t = time.perf_counter()
        value = fn()
        steps.setdefault(name, []).append((time.perf_counter() - t) * 1000)
        return value

    tuning = index.tuning
    depth = max(tuning.depth, 10 * 5)
    for q in queries[1:]:
        timed("catch_up check (stat + meta)", lambda: index.catch_up(PROJECT))
        keyword = timed("keyword candidates (FTS5 bm25)", lambda: hybrid._keyword_candidates(conn, q, filters, depth, tuning))
        vectors = timed("query embedding (the model; a search runs it beside the keyword step)",
                        lambda: index._embed([q], cached=False))
        vector = timed("vector candidates (vec0 KNN)", lambda: hybrid._vector_candidates(conn, vectors[0], filters, depth, tuning.oversample))
        timed("fetch candidate ranking fields", lambda: hybrid._ranking_fields(conn, list(keyword.keys() | vector.keys()), keyword_terms(q)))
        timed("whole search", lambda: index.search(q + " again", project=PROJECT, limit=10))
    _close_and_drop_cache(index)
    return {name: statistics.median(values) for name, values in steps.items()}


def child_main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "rebuild":
        out = child_rebuild(argv[1], argv[2], argv[3])
    elif mode == "search":
        out = child_search(argv[1], argv[2], int(argv[3]), int(argv[4]), float(argv[5]))
    elif mode == "breakdown":
        out = child_breakdown(argv[1], argv[2], int(argv[3]), int(argv[4]))
    else:
        raise SystemExit(f"unknown child mode {mode!r}")
    print("result " + json.dumps(out), flush=True)


def run_child(*args: str) -> dict[str, Any]:
    """Run this script as a child; its last line is ``result {json}``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *args],
                          capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("result ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("result "):])


# -- the parent ---------------------------------------------------------------------------


def embed_rate(kind: str, texts: list[str], batch: int = 256) -> float:
    """Texts per second of the bare embedder (no cache), in batches as a rebuild sends them."""
    embedder = _make_embedder(kind)
    embedder.embed(texts[:8])  # load the model outside the timing
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        embedder.embed(texts[i:i + batch])
    return len(texts) / (time.perf_counter() - started)


def query_embed_ms(kind: str, queries: list[str]) -> float:
    """Median milliseconds to embed one query with the bare embedder."""
    embedder = _make_embedder(kind)
    embedder.embed(["warm up"])
    times = []
    for q in queries:
        t = time.perf_counter()
        embedder.embed([q])
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def median_of(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def bench_size(n: int, args: argparse.Namespace, base: Path) -> dict[str, Any]:
    from synth import write_store

    root = (args.store_dir or base) / f"store-{n}"
    if not (root / "logs").is_dir():  # --store-dir keeps stores (and warm caches) between runs
        write_store(root, PROJECT, n)
    cache = root / "cache" / "embeddings.db"
    out: dict[str, Any] = {"size": n}
    log = lambda *a: print(f"[{n}]", *a, file=sys.stderr, flush=True)  # noqa: E731

    if args.embedder != "none":
        if n <= args.cold_max:
            colds = []
            for run in range(args.cold_runs):
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{cache}{suffix}").unlink(missing_ok=True)
                colds.append(run_child("rebuild", str(root), str(cache), args.embedder))
                log("cold rebuild", colds[-1])
            out["rebuild_cold_eps"] = statistics.median(c["events"] / c["seconds"] for c in colds)
            out["rebuild_cold_s"] = median_of(colds, "seconds")
            out["rebuild_cold_rss_mb"] = max(c["rss_mb"] for c in colds)
        else:
            # Too slow to embed everything here: fill the cache (if it is not full already,
            # from an earlier run with --store-dir) without timing anything else.
            log(f"no cold run above --cold-max {args.cold_max}; filling the cache")
            out["cache_fill"] = run_child("rebuild", str(root), str(cache), args.embedder)
            log("cache fill", out["cache_fill"])
    warms = []
    for run in range(args.runs):
        warms.append(run_child("rebuild", str(root), str(cache), args.embedder))
        log("warm rebuild", warms[-1])
    out["rebuild_warm_eps"] = statistics.median(w["events"] / w["seconds"] for w in warms)
    out["rebuild_warm_rss_mb"] = max(w["rss_mb"] for w in warms)
    keyword_only = [run_child("rebuild", str(root), str(base / "unused.db"), "none") for _ in range(args.runs)]
    out["rebuild_keyword_eps"] = statistics.median(w["events"] / w["seconds"] for w in keyword_only)
    # The keyword-only rebuild dropped the vectors: put them back (from the cache) for search.
    run_child("rebuild", str(root), str(cache), args.embedder)

    searches = []
    for run in range(args.runs):
        searches.append(run_child("search", str(root), args.embedder, str(1000 + run), str(args.queries), repr(time.time())))
        log("search", searches[-1])
    out["search_modes"] = sorted({m for s in searches for m in s["modes"]})
    for key in ("p50_ms", "p95_ms", "first_result_s", "python_start_s"):
        out[f"search_{key}"] = median_of(searches, key)
    out["search_rss_mb"] = max(s["rss_mb"] for s in searches)
    keyword = [run_child("search", str(root), "none", str(2000 + run), str(args.queries), repr(time.time()))
               for run in range(args.runs)]
    out["keyword_p50_ms"] = median_of(keyword, "p50_ms")
    out["keyword_p95_ms"] = median_of(keyword, "p95_ms")
    out["breakdown_ms"] = run_child("breakdown", str(root), args.embedder, "3000", str(min(args.queries, 100)))
    log("breakdown", out["breakdown_ms"])
    out["index_mb"] = (root / "index.db").stat().st_size / 2**20
    if not args.keep and not args.store_dir:
        shutil.rmtree(root, ignore_errors=True)
    return out


def profile_search(n: int, args: argparse.Namespace, base: Path) -> None:
    """cProfile of the search loop at size ``n`` (store built and embedded first)."""
    import cProfile
    import pstats

    from eventlog import EventLog
    from projector import Index
    from synth import Synth, write_store

    root = base / f"profile-{n}"
    write_store(root, PROJECT, n)
    index = Index(EventLog(root), _make_embedder(args.embedder))
    index.catch_up()
    queries = Synth(77).queries(args.queries + 1)
    index.search(queries[0], project=PROJECT)
    profiler = cProfile.Profile()
    profiler.enable()
    for q in queries[1:]:
        index.search(q, project=PROJECT, limit=10)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(25)
    index.close()


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or os.environ.get("BENCH_COMMIT", "")
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "commit": commit, "load_before": load}


def report(results: list[dict[str, Any]], extra: dict[str, Any]) -> str:
    rows = [
        ("search p50 (ms, hybrid, query embedding included)", "search_p50_ms", "{:.1f}"),
        ("search p95 (ms)", "search_p95_ms", "{:.1f}"),
        ("keyword-only search p50 / p95 (ms)", ("keyword_p50_ms", "keyword_p95_ms"), "{:.1f}"),
        ("spawn -> first search result (s)", "search_first_result_s", "{:.2f}"),
        ("  of which interpreter start (s)", "search_python_start_s", "{:.2f}"),
        ("peak RSS, searching process (MB)", "search_rss_mb", "{:.0f}"),
        ("rebuild, cold cache (events/s)", "rebuild_cold_eps", "{:,.0f}"),
        ("rebuild, warm cache (events/s)", "rebuild_warm_eps", "{:,.0f}"),
        ("rebuild, no embedder (events/s)", "rebuild_keyword_eps", "{:,.0f}"),
        ("peak RSS, rebuilding process (MB, warm / cold)", ("rebuild_warm_rss_mb", "rebuild_cold_rss_mb"), "{:.0f}"),
        ("index.db size (MB)", "index_mb", "{:.0f}"),
    ]
    head = "| | " + " | ".join(f"{r['size']:,} memories" for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for label, key, fmt in rows:
        cells = []
        for r in results:
            keys = key if isinstance(key, tuple) else (key,)
            cells.append(" / ".join(fmt.format(r[k]) if k in r else "-" for k in keys))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    steps = [r.get("breakdown_ms", {}) for r in results]
    for step in steps[0] if steps else []:
        lines.append(f"| step: {step} (ms, p50) | " + " | ".join(f"{s.get(step, float('nan')):.2f}" for s in steps) + " |")
    for k, v in extra.items():
        lines.append(f"\n{k}: {v}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        child_main(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="memories per store, comma-separated")
    parser.add_argument("--queries", type=int, default=200, help="timed searches per run (>= 100)")
    parser.add_argument("--runs", type=int, default=3, help="repeats of each timed step (median reported)")
    parser.add_argument("--cold-max", type=int, default=100_000, help="largest size to rebuild with a cold cache")
    parser.add_argument("--cold-runs", type=int, default=1, help="repeats of the cold rebuild")
    parser.add_argument("--embedder", default="minilm", help="minilm (default), fake, or none")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary stores go")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    parser.add_argument("--store-dir", type=Path, default=None,
                        help="keep the stores here and reuse them (and their embedding caches) next time")
    parser.add_argument("--profile", action="store_true", help="profile the search loop instead")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="bench-projector-", dir=args.dir))
    try:
        if args.profile:
            for n in sizes:
                profile_search(n, args, base)
            return
        info = machine()
        print(json.dumps(info), file=sys.stderr)
        extra: dict[str, Any] = {}
        if args.embedder != "none":
            from synth import Synth

            texts = [m[0] for m in Synth(99).memories(2000)]
            extra["bare embedder, 2,000 synthetic memories in batches of 256 (texts/s)"] = f"{embed_rate(args.embedder, texts):.0f}"
            extra["bare embedder, one query (ms, median of 200)"] = f"{query_embed_ms(args.embedder, Synth(98).queries(200)):.2f}"
            print(extra, file=sys.stderr, flush=True)
        results = [bench_size(n, args, base) for n in sizes]
        print(json.dumps({"machine": info, "results": results, "extra": extra}, indent=1), file=sys.stderr)
        print(report(results, extra))
        if args.json:
            args.json.write_text(json.dumps({"machine": info, "results": results, "extra": extra}, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
