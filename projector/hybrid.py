"""Hybrid search: keyword (bm25) and vector (cosine) candidates, each generated with every
filter applied inside its query, then fused by scaled score, smoothed with the memories
saved next to them, and boosted where the query names a memory's tag.

Both sides are bounded so that a search stays cheap at 100k memories: vector candidates come
from binary codes (a linear scan of 48 bytes a memory, not 1,536) re-scored exactly, and bm25
ranks at most ``keyword_budget`` rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import query
from .apply import has_vector_table
from .model import Hit, SearchResult
from .search import (
    affordable_terms, boost_tagged, code_distance_caps, feedback_terms, fts_any_of, fuse_scores, keyword_terms, min_max,
    rank, smooth_with_neighbours, spread_out,
)

if TYPE_CHECKING:
    from .index import Index


CAP_GROWTH = 4  # codes let through by one distance cap over the one before (measured, MiniLM)


@dataclass(frozen=True, slots=True)
class SearchTuning:
    """The knobs of hybrid ranking. The defaults were measured on LoCoMo dev
    (``tools/bench_locomo.py --ablate``, BENCHMARKS.md); change them only with a new run."""

    depth: int = 100  # candidates per side, at least; deeper than the limit so fusion can re-rank
    keyword_weight: float = 0.5  # share of the scaled bm25 score; the rest is cosine
    neighbour_weight: float = 0.3  # share of the neighbours' scores a memory gains
    tag_boost: float = 0.2  # added when the query names one of the memory's tags
    context_weight: float = 0.5  # bm25 weight of the neighbours' text (own content: 1.0)
    keyword_budget: int = 3000  # rows bm25 may rank; the commonest query words go beyond it
    # Binary-code candidates per vector candidate, re-scored exactly. 2 against 4: LoCoMo recall
    # the same (0.713/0.799 vs 0.714/0.798), the vector side ~1 ms faster at 10k and ~2 ms at
    # 100k, top-10 overlap with the exact cosine order 0.995 / 0.980 at 10k / 100k (4: 1.0 / 0.993).
    oversample: int = 2
    neighbour_radius: int = 1  # smoothing reaches this many places either side
    neighbour_decay: float = 0.5  # each place further lends this much less
    neighbour_before: float = 0.5  # share of the smoothing from earlier memories
    neighbour_pool: str = "sum"
    complete: bool = False
    complete_floor: bool = False
    complete_depth: int = 0
    vec_ctx_weight: float = 0.0
    exact_smooth: bool = False
    exact_add: bool = False
    vec_ctx_radius: int = 1
    vec_ctx_decay: float = 0.5
    complete_vec: bool = True
    complete_kw: bool = True
    spread_radius: int = 0  # results within this many places of a better one are discounted
    spread_discount: float = 0.0  # by this share, for each better one near them
    project_common_share: float = 0.0
    kw_smooth: float = 0.0
    sdm_ordered: float = 0.0
    sdm_unordered: float = 0.0
    sdm_window: int = 8
    feedback_docs: int = 0  # pseudo-relevance feedback: words of the first pass's best results
    feedback_terms: int = 5  # how many words they add to the keyword query
    feedback_weight: float = 0.3  # share of the keyword side the added words' bm25 gets


def _keyword_candidates(conn: Any, text: str, filters: query.Filters, depth: int, tuning: SearchTuning) -> dict[int, float]:
    return _keyword_search(conn, text, filters, depth, tuning)[0]


def _keyword_search(
    conn: Any, text: str, filters: query.Filters, depth: int, tuning: SearchTuning
) -> tuple[dict[int, float], str | None, float]:
    """The ``depth`` best bm25 row ids, matching the query's rarest words within the budget.
    When even the rarest word is over the budget counting the neighbours' context (which holds
    each memory's words four more times), only the memories' own words are matched."""
    words, weight, budget = keyword_terms(text), tuning.context_weight, tuning.keyword_budget
    if words and tuning.project_common_share > 0:
        words = _not_common_in_project(conn, words, filters.project, tuning.project_common_share)
    if not words:
        return {}, None, weight
    terms, over = words, True
    if weight > 0:
        # Counts capped just over the budget choose the same words as exact ones unless even
        # the rarest word is over it, and then the context is left out below anyway.
        terms, over = _within_budget(conn, words, budget, lambda match: match, cap=budget + 1)
    if over:
        terms, _ = _within_budget(conn, words, budget, query.own_words, cap=None)
        weight = 0.0
    if not terms:
        return {}, None, weight
    sql, params = query.keyword_sql(fts_any_of(terms), filters, depth, weight)
    return {row[0]: float(row[1]) for row in conn.execute(sql, params)}, fts_any_of(terms), weight


def _with_proximity(
    conn: Any, text: str, keyword: dict[int, float], filters: query.Filters, depth: int, tuning: SearchTuning
) -> dict[int, float]:
    """Sequential-dependence-like keyword score: unigram bm25 plus the bm25 of the query's
    consecutive word pairs as phrases and within a window, each scaled."""
    words = keyword_terms(text)
    pairs = list(zip(words, words[1:]))
    if not pairs or not keyword:
        return keyword
    def q(w: str) -> str:
        return '"' + w.replace('"', '""') + '"'

    parts: list[tuple[float, str]] = []
    if tuning.sdm_ordered:
        parts.append((tuning.sdm_ordered, " OR ".join(q(a + " " + b) for a, b in pairs)))
    if tuning.sdm_unordered:
        parts.append((tuning.sdm_unordered, " OR ".join(f"NEAR({q(a)} {q(b)}, {tuning.sdm_window})" for a, b in pairs)))
    rest = 1.0 - sum(w for w, _ in parts)
    out = {r: rest * v for r, v in min_max(keyword).items()}
    for w, match in parts:
        sql, params = query.keyword_sql(match, filters, depth, tuning.context_weight)
        found = min_max({row[0]: float(row[1]) for row in conn.execute(sql, params)})
        for r, v in found.items():
            out[r] = out.get(r, 0.0) + w * v
    return out


def _not_common_in_project(conn: Any, words: list[str], project: str, share: float) -> list[str]:
    size = conn.execute("SELECT count(*) FROM memory WHERE project = ? AND present = 1", (project,)).fetchone()[0]
    kept = []
    for w in words:
        n = conn.execute(
            "SELECT count(*) FROM memory_fts JOIN memory m ON m.rowid = memory_fts.rowid "
            "WHERE memory_fts MATCH ? AND m.project = ? AND m.present = 1",
            (query.own_words(fts_any_of([w])), project),
        ).fetchone()[0]
        if n < share * size:
            kept.append(w)
    return kept or words


def _within_budget(
    conn: Any, terms: list[str], budget: int, scope: Callable[[str], str], cap: int | None
) -> tuple[list[str], bool]:
    """The terms to rank (``affordable_terms`` of their row counts within ``scope``), and
    whether they still match more rows than ``budget``."""
    counts = {t: conn.execute(*query.term_count_sql(scope(fts_any_of([t])), cap)).fetchone()[0] for t in terms}
    kept = affordable_terms(counts, budget)
    return kept, sum(counts[t] for t in kept) > budget


def _coarse_vector_candidates(conn: Any, vector: bytes, filters: query.Filters, pool: int) -> list[int]:
    """Up to ``pool`` row ids nearest by binary code. Capped distances first (cheap: vec0 selects
    among the few codes under the cap), until a cap lets at least half the pool through; a cap
    that let through less than a quarter of that skips the next one (each lets ~4x more in)."""
    caps, need = code_distance_caps(len(vector) // 4), max(pool // 2, 1)
    step = 0
    while True:
        sql, params = query.coarse_vector_sql(vector, filters, pool, caps[step])
        rowids = [row[0] for row in conn.execute(sql, params)]
        if len(rowids) >= need or caps[step] is None:
            return rowids
        step = min(step + (2 if len(rowids) * CAP_GROWTH < need else 1), len(caps) - 1)


def _vector_candidates(conn: Any, vector: bytes, filters: query.Filters, depth: int, oversample: int) -> dict[int, float]:
    """The ``depth`` nearest row ids with their exact cosine similarity: a coarse pass over
    binary codes (every filter inside it) for ``depth x oversample`` candidates, re-scored on
    their float embeddings."""
    if not has_vector_table(conn):
        return {}
    rowids = _coarse_vector_candidates(conn, vector, filters, depth * oversample)
    if not rowids:
        return {}
    sql, params = query.rescore_sql(vector, rowids, depth)
    return {row[0]: float(row[1]) for row in conn.execute(sql, params)}


def hybrid_search(conn: Any, text: str, filters: query.Filters, limit: int, index: Index) -> SearchResult:
    """Search ``filters.project``; degrade to keyword search (with a warning) without vectors."""
    tuning = index.tuning
    depth = max(tuning.depth, limit * 5)
    # SQLite finds the keyword candidates on the helper thread while the model embeds the query
    # here (uncached: see Index._embed), and it is done before the connection is used again.
    kw_depth = tuning.complete_depth if tuning.complete_depth else depth
    keyword_found = index.run_beside(lambda: _keyword_candidates(conn, text, filters, kw_depth, tuning))
    try:
        vectors = index._embed([text], cached=False)
    finally:
        keyword = keyword_found()
    deep = keyword
    keyword = dict(sorted(keyword.items(), key=lambda kv: -kv[1])[:depth])
    vector = None if vectors is None else _vector_candidates(conn, vectors[0], filters, depth, tuning.oversample)
    if tuning.sdm_ordered or tuning.sdm_unordered:
        keyword = _with_proximity(conn, text, keyword, filters, depth, tuning)
    if tuning.complete and vector is not None and vectors is not None:
        _, match, weight = _keyword_search(conn, text, filters, 1, tuning)  # experiment: the match it used
        keyword, vector = _complete(conn, keyword, vector, match, weight, vectors[0], tuning.complete_floor)
    if tuning.complete_depth and vector is not None and vectors is not None:
        keyword, vector = _complete_from(conn, keyword, deep, vector, vectors[0], tuning)
    if tuning.vec_ctx_weight and vector is not None and vectors is not None:
        vector = _vector_with_neighbours(conn, keyword, vector, vectors[0], filters, tuning)
    if tuning.kw_smooth:
        kpos, _ = _ranking_fields(conn, list(keyword), [])
        keyword = smooth_with_neighbours(min_max(keyword), kpos, tuning.kw_smooth)
    if tuning.exact_smooth and vector is not None and vectors is not None:
        scores, positions = _exact_smoothing(conn, text, keyword, deep, vector, vectors[0], filters, tuning)
    else:
        scores, positions = _rank_fused(conn, text, keyword, vector, tuning)
    if tuning.feedback_docs > 0:
        first = rank(scores, tuning.feedback_docs)
        expanded = _feedback_candidates(conn, text, first, filters, depth, tuning)
        if expanded:
            kw, ex = min_max(keyword), min_max(expanded)
            beta = tuning.feedback_weight
            keyword = {r: (1 - beta) * kw.get(r, 0.0) + beta * ex.get(r, 0.0) for r in kw.keys() | ex.keys()}
            scores, positions = _rank_fused(conn, text, keyword, vector, tuning)
    best = spread_out(scores, positions, limit, tuning.spread_radius, tuning.spread_discount)
    memories = query.fetch_memories(conn, [rowid for rowid, _ in best])
    hits = [Hit(memories[rowid][1], round(score, 6)) for rowid, score in best if rowid in memories]
    warning = None if vectors is not None else _keyword_reason(index)
    stalled = conn.execute(
        "SELECT stalled FROM tracking WHERE project = ? AND stalled IS NOT NULL", (filters.project,)
    ).fetchone()
    if stalled:
        warning = ((warning + "; ") if warning else "") + f"index of this project is incomplete: {stalled[0]}"
    return SearchResult(hits, "keyword" if vectors is None else "hybrid", warning)


def _complete(
    conn: Any, keyword: dict[int, float], vector: dict[int, float], match: str | None, weight: float, embedding: bytes,
    floor: bool,
) -> tuple[dict[int, float], dict[int, float]]:
    """Both scores for every candidate: the cosine of keyword-only ones, the bm25 of vector-only ones."""
    need_vec = [r for r in keyword if r not in vector]
    need_kw = [r for r in vector if r not in keyword]
    vector = dict(vector)
    if need_vec:
        sql, params = query.rescore_sql(embedding, need_vec, len(need_vec))
        vector.update({row[0]: float(row[1]) for row in conn.execute(sql, params)})
    keyword = dict(keyword)
    found: dict[int, float] = {}
    if need_kw and match is not None:
        m = match if weight > 0 else query.own_words(match)
        sql = (
            "SELECT rowid, -rank FROM memory_fts WHERE memory_fts MATCH ? AND rank MATCH "
            f"'bm25(1.0, 0.5, {float(weight)!r})' AND rowid IN (SELECT value FROM json_each(?))"
        )
        found = {row[0]: float(row[1]) for row in conn.execute(sql, [m, query.json_ids(need_kw)])}
    for r in need_kw:
        keyword[r] = found.get(r, 0.0 if not floor else min(keyword.values(), default=0.0))
    return keyword, vector


def _complete_from(
    conn: Any, keyword: dict[int, float], deep: dict[int, float], vector: dict[int, float], embedding: bytes, tuning: SearchTuning
) -> tuple[dict[int, float], dict[int, float]]:
    vector = dict(vector)
    keyword = dict(keyword)
    if tuning.complete_vec:
        need_vec = [r for r in keyword if r not in vector]
        if need_vec:
            sql, params = query.rescore_sql(embedding, need_vec, len(need_vec))
            vector.update({row[0]: float(row[1]) for row in conn.execute(sql, params)})
    if tuning.complete_kw:
        floor = min(deep.values(), default=0.0) if tuning.complete_floor else 0.0
        for r in vector:
            if r not in keyword:
                keyword[r] = deep.get(r, floor)
    return keyword, vector


def _vector_with_neighbours(
    conn: Any, keyword: dict[int, float], vector: dict[int, float], embedding: bytes, filters: query.Filters, tuning: SearchTuning
) -> dict[int, float]:
    cands = list(keyword.keys() | vector.keys())
    pos = {r: p for r, p, _ in conn.execute(*query.ranking_fields_sql(cands, []))} if cands else {}
    radius = tuning.vec_ctx_radius
    want = sorted({p + d for p in pos.values() for d in range(-radius, radius + 1) if d})
    by_seq = {row[1]: row[0] for row in conn.execute(
        "SELECT rowid, seq FROM memory WHERE project = ? AND present = 1 AND seq IN (SELECT value FROM json_each(?))",
        [filters.project, query.json_ids(want)])}
    by_seq.update({p: r for r, p in pos.items()})
    cos = dict(vector)
    need = [r for r in set(by_seq.values()) if r not in cos]
    if need:
        sql, params = query.rescore_sql(embedding, need, len(need))
        cos.update({row[0]: float(row[1]) for row in conn.execute(sql, params)})
    out = {}
    for r, p in pos.items():
        around = 0.0
        for d in range(1, radius + 1):
            for q in (p - d, p + d):
                n = by_seq.get(q)
                around += tuning.vec_ctx_decay ** (d - 1) * (cos.get(n, 0.0) if n is not None else 0.0)
        out[r] = cos.get(r, 0.0) + tuning.vec_ctx_weight * around
    return out


def _exact_smoothing(
    conn: Any, text: str, keyword: dict[int, float], deep: dict[int, float], vector: dict[int, float], embedding: bytes,
    filters: query.Filters, tuning: SearchTuning,
) -> tuple[dict[int, float], dict[int, int]]:
    cands = list(keyword.keys() | vector.keys())
    positions, tagged = _ranking_fields(conn, cands, keyword_terms(text))
    radius = tuning.neighbour_radius
    want = sorted({p + d for p in positions.values() for d in range(-radius, radius + 1) if d} - set(positions.values()))
    extra = {row[0]: row[1] for row in conn.execute(
        "SELECT rowid, seq FROM memory WHERE project = ? AND present = 1 AND seq IN (SELECT value FROM json_each(?))",
        [filters.project, query.json_ids(want)])}
    cos = {}
    if extra:
        sql, params = query.rescore_sql(embedding, list(extra), len(extra))
        cos = {row[0]: float(row[1]) for row in conn.execute(sql, params)}
    def scaler(side: dict[int, float]) -> Callable[[float], float]:
        lo, hi = min(side.values(), default=0.0), max(side.values(), default=1.0)
        return lambda x: max(0.0, (x - lo) / (hi - lo)) if hi > lo else 0.0
    ks, vs, w = scaler(keyword), scaler(vector), tuning.keyword_weight
    fused = fuse_scores(keyword, vector, w)
    fused = {r: s for r, s in fused.items() if r in positions}
    outside = {r: w * (ks(deep[r]) if r in deep else 0.0) + (1 - w) * vs(cos.get(r, 0.0)) for r in extra}
    allpos = {**positions, **extra}
    allscores = {**fused, **outside}
    smoothed = smooth_with_neighbours(allscores, allpos, tuning.neighbour_weight, radius, tuning.neighbour_decay)
    if tuning.exact_add:
        tagged2 = _ranking_fields(conn, list(extra), keyword_terms(text))[1] if extra else set()
        return boost_tagged(smoothed, tagged | tagged2, tuning.tag_boost), allpos
    smoothed = {r: s for r, s in smoothed.items() if r in positions}
    return boost_tagged(smoothed, tagged, tuning.tag_boost), positions


def _rank_fused(
    conn: Any, text: str, keyword: dict[int, float], vector: dict[int, float] | None, tuning: SearchTuning
) -> tuple[dict[int, float], dict[int, int]]:
    scores = fuse_scores(keyword, vector, tuning.keyword_weight)
    positions, tagged = _ranking_fields(conn, list(scores), keyword_terms(text))
    scores = {rowid: score for rowid, score in scores.items() if rowid in positions}
    scores = smooth_with_neighbours(scores, positions, tuning.neighbour_weight, tuning.neighbour_radius, tuning.neighbour_decay, tuning.neighbour_before, tuning.neighbour_pool)
    scores = boost_tagged(scores, tagged, tuning.tag_boost)
    return scores, positions


def _feedback_candidates(
    conn: Any, text: str, first: list[tuple[int, float]], filters: query.Filters, depth: int, tuning: SearchTuning
) -> dict[int, float]:
    memories = query.fetch_memories(conn, [rowid for rowid, _ in first])
    top = max((s for _, s in first), default=1.0) or 1.0
    texts = [(memories[rowid][1].content, s / top) for rowid, s in first if rowid in memories]
    words = {w for t, _ in texts for w in keyword_terms(t)}
    cap = tuning.keyword_budget + 1
    counts = {w: conn.execute(*query.term_count_sql(query.own_words(fts_any_of([w])), cap)).fetchone()[0] for w in words}
    counts = {w: c for w, c in counts.items() if c < cap}
    total = conn.execute("SELECT count(*) FROM memory WHERE present = 1").fetchone()[0]
    terms = feedback_terms(texts, counts, total, set(keyword_terms(text)), tuning.feedback_terms)
    if not terms:
        return {}
    sql, params = query.keyword_sql(fts_any_of(terms), filters, depth, tuning.context_weight)
    return {row[0]: float(row[1]) for row in conn.execute(sql, params)}


def _ranking_fields(conn: Any, rowids: list[int], words: list[str]) -> tuple[dict[int, int], set[int]]:
    """The present ones of ``rowids`` with their log positions, and those with a tag the query names."""
    if not rowids:
        return {}, set()
    rows = conn.execute(*query.ranking_fields_sql(rowids, words)).fetchall()
    return {row[0]: row[1] for row in rows}, {row[0] for row in rows if row[2]}


def _keyword_reason(index: Index) -> str:
    if index._inner_embedder is None:
        return "no embedding model is configured (MNEMOLOG_EMBEDDER=none): keyword search only"
    return f"embedding model unavailable ({index._embed_error}): keyword search only"
