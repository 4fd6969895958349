"""Hybrid search: keyword (bm25) and vector (cosine) candidates, each generated with every
filter applied inside its query, then fused by scaled score, smoothed with the memories
saved next to them, and boosted where the query names a memory's tag."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import query
from .apply import has_vector_table
from .model import Hit, SearchResult
from .search import boost_tagged, fts_match_expression, fuse_scores, keyword_terms, rank, smooth_with_neighbours

if TYPE_CHECKING:
    from .index import Index


@dataclass(frozen=True, slots=True)
class SearchTuning:
    """The knobs of hybrid ranking. The defaults were measured on LoCoMo dev
    (``tools/bench_locomo.py --ablate``, BENCHMARKS.md); change them only with a new run."""

    depth: int = 100  # candidates per side, at least; deeper than the limit so fusion can re-rank
    keyword_weight: float = 0.5  # share of the scaled bm25 score; the rest is cosine
    neighbour_weight: float = 0.3  # share of the neighbours' scores a memory gains
    tag_boost: float = 0.2  # added when the query names one of the memory's tags
    context_weight: float = 0.5  # bm25 weight of the neighbours' text (own content: 1.0)


def _keyword_candidates(
    conn: Any, text: str, filters: query.Filters, depth: int, context_weight: float
) -> dict[int, float]:
    match = fts_match_expression(text)
    if match is None:
        return {}
    sql, params = query.keyword_sql(match, filters, depth, context_weight)
    return {row[0]: float(row[1]) for row in conn.execute(sql, params)}


def _vector_candidates(conn: Any, vector: bytes, filters: query.Filters, depth: int) -> dict[int, float]:
    if not has_vector_table(conn):
        return {}
    sql, params = query.vector_sql(vector, filters, depth)
    return {row[0]: float(row[1]) for row in conn.execute(sql, params)}


def hybrid_search(conn: Any, text: str, filters: query.Filters, limit: int, index: Index) -> SearchResult:
    """Search ``filters.project``; degrade to keyword search (with a warning) without vectors."""
    tuning = index.tuning
    depth = max(tuning.depth, limit * 5)
    keyword = _keyword_candidates(conn, text, filters, depth, tuning.context_weight)
    vectors = index._embed([text])
    vector = None if vectors is None else _vector_candidates(conn, vectors[0], filters, depth)
    scores = fuse_scores(keyword, vector, tuning.keyword_weight)
    found = query.fetch_memories(conn, list(scores))
    scores = smooth_with_neighbours(scores, {r: seq for r, (seq, _) in found.items()}, tuning.neighbour_weight)
    scores = boost_tagged(scores, {r: m.tags for r, (_, m) in found.items()}, keyword_terms(text), tuning.tag_boost)
    hits = [Hit(found[rowid][1], round(score, 6)) for rowid, score in rank(scores, limit) if rowid in found]
    warning = None if vectors is not None else _keyword_reason(index)
    stalled = conn.execute(
        "SELECT stalled FROM tracking WHERE project = ? AND stalled IS NOT NULL", (filters.project,)
    ).fetchone()
    if stalled:
        warning = ((warning + "; ") if warning else "") + f"index of this project is incomplete: {stalled[0]}"
    return SearchResult(hits, "keyword" if vectors is None else "hybrid", warning)


def _keyword_reason(index: Index) -> str:
    if index._inner_embedder is None:
        return "no embedding model is configured (MNEMOLOG_EMBEDDER=none): keyword search only"
    return f"embedding model unavailable ({index._embed_error}): keyword search only"
