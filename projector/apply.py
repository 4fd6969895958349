"""The thin executor: planned operations -> SQL on one connection, inside the caller's
transaction. Knows the tables; decides nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from .plan import Current, Op, SetCreated, Tombstone, UpsertMemory
from .query import epoch_ms
from .schema import vector_table_sql


def read_current(conn: Any, project: str, memory_id: str) -> Current | None:
    """The deciding event and earliest save of a memory, as the index holds them."""
    row = conn.execute(
        "SELECT updated_at, winner_event_id, created_at FROM memory WHERE project = ? AND memory_id = ?",
        (project, memory_id),
    ).fetchone()
    return Current((row[0], row[1]), row[2]) if row else None


def _rowid(conn: Any, project: str, memory_id: str) -> int | None:
    row = conn.execute(
        "SELECT rowid FROM memory WHERE project = ? AND memory_id = ?", (project, memory_id)
    ).fetchone()
    return int(row[0]) if row else None


def has_vector_table(conn: Any) -> bool:
    """True once the vec0 table exists (it is created with the first vector's dimension)."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'memory_vec'").fetchone()
    return row is not None


def _clear_derived(conn: Any, rowid: int) -> None:
    # vec0 and FTS5 have no UPSERT: delete, then insert again.
    conn.execute("DELETE FROM memory_fts WHERE rowid = ?", (rowid,))
    conn.execute("DELETE FROM memory_tag WHERE memory_rowid = ?", (rowid,))
    conn.execute("DELETE FROM memory_embedding WHERE rowid = ?", (rowid,))
    if has_vector_table(conn):
        conn.execute("DELETE FROM memory_vec WHERE rowid = ?", (rowid,))


def insert_vector(conn: Any, rowid: int, project: str, vector: bytes, importance: int, created_at: str) -> None:
    """Store one embedding (float32 bytes) and its binary code, creating the vec0 table (sized
    by the first vector) on first use."""
    if not has_vector_table(conn):
        conn.execute(vector_table_sql(len(vector) // 4))
    conn.execute(
        "INSERT INTO memory_vec (rowid, project, code, importance, created_ms)"
        " VALUES (?, ?, vec_quantize_binary(vec_f32(?)), ?, ?)",
        (rowid, project, vector, importance, epoch_ms(created_at)),
    )
    conn.execute("INSERT INTO memory_embedding (rowid, vector) VALUES (?, ?)", (rowid, vector))


def _upsert(conn: Any, op: UpsertMemory, vectors: Mapping[str, bytes], seq: int) -> None:
    e = op.event
    values = (
        e.content, orjson.dumps(list(e.tags)).decode(), e.importance, e.kind,
        orjson.dumps(e.meta).decode(), op.created_at, e.ts, e.event_id,
    )
    rowid = _rowid(conn, e.project, e.memory_id)
    if rowid is None:
        cursor = conn.execute(
            "INSERT INTO memory (project, memory_id, present, content, tags, importance, kind, meta,"
            " created_at, updated_at, winner_event_id, seq) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (e.project, e.memory_id, *values, seq),
        )
        rowid = int(cursor.lastrowid)
    else:
        conn.execute(
            "UPDATE memory SET present = 1, content = ?, tags = ?, importance = ?, kind = ?, meta = ?,"
            " created_at = ?, updated_at = ?, winner_event_id = ? WHERE rowid = ?",
            (*values, rowid),
        )
        _clear_derived(conn, rowid)
    # The full-text row is written by context.refresh_fulltext once per batch, with the
    # neighbour context only the whole batch can give.
    conn.executemany(
        "INSERT OR IGNORE INTO memory_tag (memory_rowid, project, tag) VALUES (?, ?, ?)",
        [(rowid, e.project, tag.lower()) for tag in e.tags],
    )
    vector = vectors.get(e.event_id)
    if vector is not None:
        insert_vector(conn, rowid, e.project, vector, e.importance, op.created_at)


def _tombstone(conn: Any, op: Tombstone, seq: int) -> None:
    e = op.event
    rowid = _rowid(conn, e.project, e.memory_id)
    if rowid is None:
        conn.execute(
            "INSERT INTO memory (project, memory_id, present, created_at, updated_at, winner_event_id, seq)"
            " VALUES (?, ?, 0, ?, ?, ?, ?)",
            (e.project, e.memory_id, op.created_at, e.ts, e.event_id, seq),
        )
        return
    conn.execute(
        "UPDATE memory SET present = 0, content = NULL, tags = NULL, importance = NULL, kind = NULL,"
        " meta = NULL, created_at = ?, updated_at = ?, winner_event_id = ? WHERE rowid = ?",
        (op.created_at, e.ts, e.event_id, rowid),
    )
    _clear_derived(conn, rowid)


def _set_created(conn: Any, op: SetCreated) -> None:
    rowid = _rowid(conn, op.project, op.memory_id)
    conn.execute("UPDATE memory SET created_at = ? WHERE rowid = ?", (op.created_at, rowid))
    if rowid is not None and has_vector_table(conn):
        conn.execute("UPDATE memory_vec SET created_ms = ? WHERE rowid = ?", (epoch_ms(op.created_at), rowid))


def apply_ops(conn: Any, ops: Iterable[Op], vectors: Mapping[str, bytes], seq: int = 0) -> None:
    """Execute planned operations; ``vectors`` maps a save's event id to its embedding and
    ``seq`` is the log line of the event (kept for memories seen for the first time)."""
    for op in ops:
        match op:
            case UpsertMemory():
                _upsert(conn, op, vectors, seq)
            case Tombstone():
                _tombstone(conn, op, seq)
            case SetCreated():
                _set_created(conn, op)


def mark_vectors_incomplete(conn: Any) -> None:
    """Note that some present memories have no vector yet (filled in by the next catch-up
    that has a working model)."""
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('vectors_complete', '0')")


def delete_project(conn: Any, project: str) -> None:
    """Remove every row of a project (before a rescan of a rewritten or vanished log)."""
    rowids = [r[0] for r in conn.execute("SELECT rowid FROM memory WHERE project = ?", (project,))]
    for rowid in rowids:
        _clear_derived(conn, rowid)
    conn.execute("DELETE FROM memory WHERE project = ?", (project,))
    conn.execute("DELETE FROM tracking WHERE project = ?", (project,))
