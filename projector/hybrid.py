"""Hybrid search: keyword (bm25) and vector (KNN) candidates, filtered inside each candidate
query, fused by reciprocal rank."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import query
from .apply import has_vector_table
from .model import Hit, SearchResult
from .search import fts_match_expression, reciprocal_rank_fusion

if TYPE_CHECKING:
    from .index import Index

CANDIDATE_DEPTH = 50  # per side, at least; more than the limit so fusion can re-rank
KEYWORD_WEIGHT = 1.0
VECTOR_WEIGHT = 1.0


def _keyword_candidates(conn: Any, text: str, filters: query.Filters, depth: int) -> list[int]:
    match = fts_match_expression(text)
    if match is None:
        return []
    sql, params = query.keyword_sql(match, filters, depth)
    return [row[0] for row in conn.execute(sql, params)]


def _vector_candidates(conn: Any, vector: bytes, filters: query.Filters, depth: int) -> list[int]:
    if not has_vector_table(conn):
        return []
    sql, params = query.vector_sql(vector, filters, depth)
    return [row[0] for row in conn.execute(sql, params)]


def hybrid_search(conn: Any, text: str, filters: query.Filters, limit: int, index: Index) -> SearchResult:
    """Search ``filters.project``; degrade to keyword search (with a warning) without vectors."""
    depth = max(CANDIDATE_DEPTH, limit * 5)
    rankings = [_keyword_candidates(conn, text, filters, depth)]
    weights = [KEYWORD_WEIGHT]
    vectors = index._embed([text])
    warning = None
    if vectors is None:
        mode = "keyword"
        warning = _keyword_reason(index)
    else:
        mode = "hybrid"
        rankings.append(_vector_candidates(conn, vectors[0], filters, depth))
        weights.append(VECTOR_WEIGHT)
    fused = reciprocal_rank_fusion(rankings, weights)[:limit]
    memories = query.fetch_memories(conn, [f.rowid for f in fused])
    best = sum(w / (1 + 60) for w in weights)  # the score of a first place on every side
    hits = [Hit(memories[f.rowid], round(f.score / best, 6)) for f in fused if f.rowid in memories]
    stalled = conn.execute(
        "SELECT stalled FROM tracking WHERE project = ? AND stalled IS NOT NULL", (filters.project,)
    ).fetchone()
    if stalled:
        warning = ((warning + "; ") if warning else "") + f"index of this project is incomplete: {stalled[0]}"
    return SearchResult(hits, mode, warning)


def _keyword_reason(index: Index) -> str:
    if index._inner_embedder is None:
        return "no embedding model is configured (MNEMOLOG_EMBEDDER=none): keyword search only"
    return f"embedding model unavailable ({index._embed_error}): keyword search only"
