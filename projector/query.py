"""Read queries over the index. Builders return ``(sql, params)`` so they can be shown and
tested without a database; the filters are applied inside candidate generation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from .model import Memory, ProjectInfo, TagCount

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MEMORY_COLUMNS = "m.memory_id, m.project, m.content, m.tags, m.importance, m.kind, m.created_at, m.updated_at, m.meta"


@dataclass(frozen=True, slots=True)
class Filters:
    """Restrictions every candidate must meet (the project always applies)."""

    project: str
    tags: tuple[str, ...] = ()
    min_importance: int | None = None
    since: str | None = None  # inclusive, ISO UTC
    until: str | None = None  # exclusive, ISO UTC


def filter_sql(f: Filters, alias: str = "m") -> tuple[str, list[Any]]:
    """SQL conditions (joined with AND) and params for ``f`` on a table aliased ``alias``."""
    clauses, params = [f"{alias}.project = ?"], list[Any]([f.project])
    if f.min_importance is not None:
        clauses.append(f"{alias}.importance >= ?")
        params.append(f.min_importance)
    if f.since is not None:
        clauses.append(f"{alias}.created_at >= ?")
        params.append(f.since)
    if f.until is not None:
        clauses.append(f"{alias}.created_at < ?")
        params.append(f.until)
    if f.tags:
        marks = ", ".join("?" for _ in f.tags)
        clauses.append(
            f"{alias}.rowid IN (SELECT memory_rowid FROM memory_tag WHERE project = ? AND tag IN ({marks}))"
        )
        params.extend([f.project, *(t.lower() for t in f.tags)])
    return " AND ".join(clauses), params


def keyword_sql(match: str, f: Filters, depth: int, context_weight: float = 0.5) -> tuple[str, list[Any]]:
    """Row ids matching ``match`` with their bm25 relevance (higher is better; content
    weighted above tags and the neighbours' context; a context weight of 0 leaves the
    context out of matching too). Ordered by FTS5's ``rank`` so that FTS5 sorts its matches
    itself and the join to ``memory`` stops at ``depth`` rows that meet the filters."""
    where, params = filter_sql(f)
    if context_weight == 0:
        match = own_words(match)
    weights = f"1.0, 0.5, {float(context_weight)!r}"
    sql = (
        "SELECT memory_fts.rowid, -memory_fts.rank FROM memory_fts JOIN memory m ON m.rowid = memory_fts.rowid "
        f"WHERE memory_fts MATCH ? AND memory_fts.rank MATCH 'bm25({weights})' AND m.present = 1 AND {where} "
        "ORDER BY memory_fts.rank LIMIT ?"
    )
    return sql, [match, *params, depth]


def epoch_ms(iso: str) -> int:
    """Milliseconds since the epoch of an ISO-8601 timestamp (UTC unless it names an offset),
    rounded up: for a whole number of milliseconds ``x``, ``x >= t`` iff ``x >= ceil(t)`` (and so
    for ``<``), so comparing ``epoch_ms`` values gives what comparing the ISO texts did."""
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    micros = (moment - EPOCH) // timedelta(microseconds=1)
    return -(-micros // 1000)


def own_words(match: str) -> str:
    """``match`` restricted to a memory's own content and tags (not its neighbours' context)."""
    return "{content tags} : (" + match + ")"


def term_count_sql(term_match: str, cap: int | None = None) -> tuple[str, list[Any]]:
    """How many rows (of every project) match ``term_match``, counting no further than ``cap``:
    cheap, FTS5 counts without ranking (and a cap stops the walk through a common word's rows)."""
    sql = "SELECT count(*) FROM (SELECT 1 FROM memory_fts WHERE memory_fts MATCH ? LIMIT ?)"
    return sql, [term_match, -1 if cap is None else cap]


def vector_filter_sql(f: Filters) -> tuple[str, list[Any]]:
    """``f`` as conditions on ``memory_vec``'s partition key and metadata columns; tags, which
    live outside vec0, as a ``rowid IN`` set that vec0 also applies inside its scan."""
    clauses, params = ["project = ?"], list[Any]([f.project])
    if f.min_importance is not None:
        clauses.append("importance >= ?")
        params.append(f.min_importance)
    if f.since is not None:
        clauses.append("created_ms >= ?")
        params.append(epoch_ms(f.since))
    if f.until is not None:
        clauses.append("created_ms < ?")
        params.append(epoch_ms(f.until))
    if f.tags:
        marks = ", ".join("?" for _ in f.tags)
        clauses.append(f"rowid IN (SELECT memory_rowid FROM memory_tag WHERE project = ? AND tag IN ({marks}))")
        params.extend([f.project, *(t.lower() for t in f.tags)])
    return " AND ".join(clauses), params


def coarse_vector_sql(vector: bytes, f: Filters, pool: int, max_distance: int | None) -> tuple[str, list[Any]]:
    """Row ids of the ``pool`` binary codes nearest (hamming) to ``vector``'s code, every filter
    inside vec0's KNN. ``max_distance`` caps the distance: vec0 then drops far codes before its
    top-k selection, whose cost grows with k x rows scanned (k = 400 over 100k codes: ~40 ms
    without a cap, ~7 ms with one that lets ~400 through)."""
    where, params = vector_filter_sql(f)
    cap = "" if max_distance is None else " AND distance <= ?"
    sql = f"SELECT rowid FROM memory_vec WHERE code MATCH vec_quantize_binary(vec_f32(?)) AND k = ? AND {where}{cap}"
    return sql, [vector, pool, *params, *([] if max_distance is None else [max_distance])]


# An upper bound on the rows of the full-text index (every project's), in one index probe:
# its rows are the memories', by row id.
ROW_BOUND_SQL = "SELECT coalesce(max(rowid), 0) FROM memory"


def present_bound_sql(project: str) -> tuple[str, list[Any]]:
    """An upper bound on the present memories of ``project`` in one index probe: each was first
    seen on a line of its own, and ``seq`` is that line's number (counting them walks them all:
    7 ms at 100k)."""
    return "SELECT coalesce(max(seq), 0) FROM memory WHERE project = ? AND present = 1", [project]


def rescore_sql(vector: bytes, rowids: Sequence[int], depth: int) -> tuple[str, list[Any]]:
    """The ``depth`` rows of ``rowids`` most similar to ``vector`` by exact cosine on the float
    embeddings, with that similarity (ties by row id)."""
    sql = (
        "SELECT rowid, 1.0 - vec_distance_cosine(vector, ?) AS similarity FROM memory_embedding "
        "WHERE rowid IN (SELECT value FROM json_each(?)) ORDER BY similarity DESC, rowid LIMIT ?"
    )
    return sql, [vector, json_ids(rowids), depth]


# Positions in a ``state_sql`` row of what deciding between it and newer events needs.
STATE_CREATED_AT, STATE_UPDATED_AT, STATE_PRESENT, STATE_WINNER_EVENT_ID = 6, 7, 9, 10


def state_sql() -> str:
    """One memory of a project by id, present or forgotten: ``MEMORY_COLUMNS``, then
    ``present`` and ``winner_event_id`` (parameters: project, memory_id)."""
    return f"SELECT {MEMORY_COLUMNS}, m.present, m.winner_event_id FROM memory m WHERE m.project = ? AND m.memory_id = ?"


def row_to_memory(row: Sequence[Any]) -> Memory:
    """A ``memory`` row (``MEMORY_COLUMNS`` order) as a ``Memory``."""
    return Memory(
        id=row[0], project=row[1], content=row[2], tags=tuple(orjson.loads(row[3] or "[]")),
        importance=row[4], kind=row[5], created_at=row[6], updated_at=row[7],
        meta=orjson.loads(row[8] or "{}"),
    )


def fetch_memories(conn: Any, rowids: Sequence[int]) -> dict[int, tuple[int, Memory]]:
    """Present memories by row id, each with its position (``seq``) in its project's log."""
    if not rowids:
        return {}
    marks = ", ".join("?" for _ in rowids)
    rows = conn.execute(
        f"SELECT m.rowid, m.seq, {MEMORY_COLUMNS} FROM memory m WHERE m.present = 1 AND m.rowid IN ({marks})",
        list(rowids),
    )
    return {row[0]: (row[1], row_to_memory(row[2:])) for row in rows}


def json_ids(rowids: Sequence[int]) -> str:
    """Row ids as one JSON list, bound as one parameter and read with ``json_each``: any number
    of candidates without SQLite's limit on bound parameters."""
    return orjson.dumps(list(rowids)).decode()


def ranking_fields_sql(rowids: Sequence[int], words: Sequence[str]) -> tuple[str, list[Any]]:
    """Of the present memories among ``rowids``: row id, log position (``seq``, for neighbour
    smoothing) and whether one of its tags equals one of ``words`` (lower-cased, as
    ``memory_tag`` holds tags; a primary-key lookup, where parsing every candidate's tags took
    as long again as the rest). Whole rows are read only for the few results."""
    marks = ", ".join("?" for _ in words)
    sql = (
        "SELECT m.rowid, m.seq, EXISTS (SELECT 1 FROM memory_tag t WHERE t.memory_rowid = m.rowid "
        f"AND t.tag IN ({marks})) FROM memory m WHERE m.present = 1 AND m.rowid IN (SELECT value FROM json_each(?))"
    )
    return sql, [*words, json_ids(rowids)]


def any_forgotten_sql(project: str) -> tuple[str, list[Any]]:
    """Whether ``project`` has a forgotten memory (one probe of the ``memory_by_seq`` index)."""
    return "SELECT EXISTS (SELECT 1 FROM memory WHERE project = ? AND present = 0)", [project]


def empty_gaps_sql(project: str, gaps: Sequence[tuple[int, int]]) -> tuple[str, list[Any]]:
    """Of ``gaps`` (pairs of log positions), those with no present memory of ``project``
    strictly between them: one probe of the ``(project, present, seq)`` index each."""
    sql = (
        "SELECT g.value ->> 0, g.value ->> 1 FROM json_each(?) g WHERE NOT EXISTS (SELECT 1 FROM memory m "
        "WHERE m.project = ? AND m.present = 1 AND m.seq > g.value ->> 0 AND m.seq < g.value ->> 1)"
    )
    return sql, [orjson.dumps([list(gap) for gap in gaps]).decode(), project]


def context_sql(f: Filters, limit: int) -> tuple[str, list[Any]]:
    """The start-of-session context: most important first, then most recent."""
    where, params = filter_sql(f)
    sql = (
        f"SELECT {MEMORY_COLUMNS} FROM memory m WHERE m.present = 1 AND {where} "
        "ORDER BY m.importance DESC, m.updated_at DESC, m.memory_id LIMIT ?"
    )
    return sql, [*params, limit]


def count_sql(f: Filters) -> tuple[str, list[Any]]:
    """How many present memories meet ``f``."""
    where, params = filter_sql(f)
    return f"SELECT count(*) FROM memory m WHERE m.present = 1 AND {where}", params


def prefix_sql(project: str, prefix: str) -> tuple[str, list[Any]]:
    """Present memories of ``project`` whose id starts with ``prefix`` (at most two)."""
    sql = (
        f"SELECT {MEMORY_COLUMNS} FROM memory m WHERE m.project = ? AND m.present = 1 "
        "AND m.memory_id >= ? AND m.memory_id < ? ORDER BY m.memory_id LIMIT 2"
    )
    return sql, [project, prefix, prefix + "g"]  # 'g' sorts after every hex digit


def list_projects(conn: Any, logged: Sequence[str]) -> list[ProjectInfo]:
    """Projects with their present-memory counts and latest event time."""
    rows = conn.execute(
        "SELECT project, sum(present), max(updated_at) FROM memory GROUP BY project"
    ).fetchall()
    found = {r[0]: ProjectInfo(r[0], int(r[1] or 0), r[2]) for r in rows}
    for name in logged:
        found.setdefault(name, ProjectInfo(name, 0, None))
    return sorted(found.values(), key=lambda p: p.name)


def popular_tags(conn: Any, project: str | None, limit: int, min_usage: int) -> list[TagCount]:
    """Tags of present memories by use, most used first."""
    where, params = ("WHERE t.project = ?", [project]) if project else ("", [])
    rows = conn.execute(
        f"SELECT t.tag, count(*) AS n FROM memory_tag t {where} GROUP BY t.tag "
        "HAVING n >= ? ORDER BY n DESC, t.tag LIMIT ?",
        [*params, min_usage, limit],
    )
    return [TagCount(tag, int(n)) for tag, n in rows]
