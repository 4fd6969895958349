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
    affordable_terms,
    boost_tagged,
    code_distance_caps,
    first_cap_step,
    fts_any_of,
    fuse_scores,
    gaps_to_check,
    keyword_terms,
    next_neighbours,
    rank,
    smooth_with_neighbours,
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


def _keyword_candidates(conn: Any, text: str, filters: query.Filters, depth: int, tuning: SearchTuning) -> dict[int, float]:
    """The ``depth`` best bm25 row ids, matching the query's rarest words within the budget.
    When even the rarest word is over the budget counting the neighbours' context (which holds
    each memory's words four more times), only the memories' own words are matched."""
    words, weight, budget = keyword_terms(text), tuning.context_weight, tuning.keyword_budget
    if not words:
        return {}
    terms, over = words, conn.execute(query.ROW_BOUND_SQL).fetchone()[0] > budget
    # Within the bound every word is matched: no OR of words can match more rows than the index
    # holds, so counting them (a query a word) would only cost time.
    if over and weight > 0:
        # Counts capped just over the budget choose the same words as exact ones unless even
        # the rarest word is over it, and then the context is left out below anyway.
        terms, over = _within_budget(conn, words, budget, lambda match: match, cap=budget + 1)
    if over:
        terms, _ = _within_budget(conn, words, budget, query.own_words, cap=None)
        weight = 0.0
    if not terms:
        return {}
    sql, params = query.keyword_sql(fts_any_of(terms), filters, depth, weight)
    return {row[0]: float(row[1]) for row in conn.execute(sql, params)}


def _within_budget(
    conn: Any, terms: list[str], budget: int, scope: Callable[[str], str], cap: int | None
) -> tuple[list[str], bool]:
    """The terms to rank (``affordable_terms`` of their row counts within ``scope``), and
    whether they still match more rows than ``budget``."""
    counts = {t: conn.execute(*query.term_count_sql(scope(fts_any_of([t])), cap)).fetchone()[0] for t in terms}
    kept = affordable_terms(counts, budget)
    return kept, sum(counts[t] for t in kept) > budget


def _coarse_vector_candidates(conn: Any, vector: bytes, filters: query.Filters, pool: int, codes_at_most: int) -> list[int]:
    """Up to ``pool`` row ids nearest by binary code. Capped distances first (cheap: vec0 selects
    among the few codes under the cap), from the tightest expected to be enough for a project
    of ``codes_at_most`` codes, until a cap lets at least half the pool through; a cap that let
    through less than a quarter of that skips the next one (each lets ~4x more in)."""
    caps, need = code_distance_caps(len(vector) // 4), max(pool // 2, 1)
    step = first_cap_step(codes_at_most, need)
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
    codes_at_most = conn.execute(*query.present_bound_sql(filters.project)).fetchone()[0]
    rowids = _coarse_vector_candidates(conn, vector, filters, depth * oversample, codes_at_most)
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
    keyword_found = index.run_beside(lambda: _keyword_candidates(conn, text, filters, depth, tuning))
    try:
        vectors = index._embed([text], cached=False)
    finally:
        keyword = keyword_found()
    vector = None if vectors is None else _vector_candidates(conn, vectors[0], filters, depth, tuning.oversample)
    scores = fuse_scores(keyword, vector, tuning.keyword_weight)
    positions, tagged = _ranking_fields(conn, list(scores), keyword_terms(text))
    scores = {rowid: score for rowid, score in scores.items() if rowid in positions}
    scores = smooth_with_neighbours(scores, _next_neighbours(conn, filters.project, positions), tuning.neighbour_weight)
    scores = boost_tagged(scores, tagged, tuning.tag_boost)
    best = rank(scores, limit)
    memories = query.fetch_memories(conn, [rowid for rowid, _ in best])
    hits = [Hit(memories[rowid][1], round(score, 6)) for rowid, score in best if rowid in memories]
    warning = None if vectors is not None else _keyword_reason(index)
    stalled = conn.execute(
        "SELECT stalled FROM tracking WHERE project = ? AND stalled IS NOT NULL", (filters.project,)
    ).fetchone()
    if stalled:
        warning = ((warning + "; ") if warning else "") + f"index of this project is incomplete: {stalled[0]}"
    return SearchResult(hits, "keyword" if vectors is None else "hybrid", warning)


def _ranking_fields(conn: Any, rowids: list[int], words: list[str]) -> tuple[dict[int, int], set[int]]:
    """The present ones of ``rowids`` with their log positions, and those with a tag the query names."""
    if not rowids:
        return {}, set()
    rows = conn.execute(*query.ranking_fields_sql(rowids, words)).fetchall()
    return {row[0]: row[1] for row in rows}, {row[0] for row in rows if row[2]}


def _next_neighbours(conn: Any, project: str, positions: dict[int, int]) -> dict[int, int]:
    """``search.next_neighbours`` of the candidates, the gaps between them looked up, but only
    in a project with a forgotten memory (a forget or an update has left a line between
    memories; else a gap holds other memories, bar a rare garbage or duplicate line): the
    lookups cost ~0.5 ms at 1k memories, where most candidates are a few lines apart."""
    gaps, empty = gaps_to_check(positions), set[tuple[int, int]]()
    if gaps and conn.execute(*query.any_forgotten_sql(project)).fetchone()[0]:
        empty = {(row[0], row[1]) for row in conn.execute(*query.empty_gaps_sql(project, gaps))}
    return next_neighbours(positions, empty)


def _keyword_reason(index: Index) -> str:
    if index._inner_embedder is None:
        return "no embedding model is configured (MNEMOLOG_EMBEDDER=none): keyword search only"
    return f"embedding model unavailable ({index._embed_error}): keyword search only"
