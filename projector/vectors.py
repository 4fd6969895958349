"""Re-embedding: vectors for present memories that have none (model changed, or saves made
while no model could load). Runs under the index lock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .apply import has_vector_table, insert_vector

BATCH = 256


def backfill_vectors(conn: Any, embed: Callable[[Sequence[str]], list[bytes] | None], *, reset: bool) -> bool:
    """Embed present memories lacking a vector; ``reset`` drops all vectors first.
    Returns True if every present memory has a vector afterwards."""
    if reset:
        conn.execute("DROP TABLE IF EXISTS memory_vec")  # its code width was the old model's dimension
        conn.execute("DELETE FROM memory_embedding")
    while True:
        where = "m.present = 1"
        if has_vector_table(conn):
            where += " AND m.rowid NOT IN (SELECT rowid FROM memory_vec)"
        rows = conn.execute(
            f"SELECT m.rowid, m.project, m.content, m.importance, m.created_at FROM memory m WHERE {where} LIMIT ?",
            (BATCH,),
        ).fetchall()
        if not rows:
            return True
        blobs = embed([r[2] for r in rows])
        if blobs is None:
            return False
        conn.execute("BEGIN IMMEDIATE")
        try:
            for (rowid, project, _content, importance, created_at), blob in zip(rows, blobs, strict=True):
                insert_vector(conn, rowid, project, blob, importance, created_at)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
