"""Neighbour context: the words a memory borrows, for keyword search, from the memories saved
just before and after it in the same project.

Memories saved one after another usually belong to one conversation, and a short one is often
only understood with its neighbours ("yes, that one, from Paris"). Each full-text row holds,
besides the memory's own content, a ``context`` column with the content of up to
``CONTEXT_RADIUS`` present memories on each side (by ``seq``, the log position), searched
with a lower bm25 weight than the memory's own words. Measured on LoCoMo dev: recall@5/@10
0.640/0.739 -> 0.715/0.800 (BENCHMARKS.md). Only keyword search uses it: embeddings stay of
the memory alone, so a save still embeds one text and a neighbour's arrival embeds nothing.

The context is a function of the present memories of a project and their order, so whatever
changes which memories are present (a save, a forget, a save after a forget) rewrites the
context of the memories within the radius on both sides, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

CONTEXT_RADIUS = 2  # measured: 1 gives 0.693/0.780, 2 gives 0.715/0.800, 3 gives 0.707/0.801


def join_context(neighbours: Sequence[str]) -> str:
    """The context column's text for the contents of a memory's neighbours, in log order."""
    return "\n".join(neighbours)


def contexts_in_order(contents: Sequence[str], radius: int = CONTEXT_RADIUS) -> list[str]:
    """The context of each memory of a project, given every present memory's content in log
    order (pure: what a full replay computes, and what ``refresh_contexts`` must keep equal)."""
    return [
        join_context([*contents[max(0, i - radius) : i], *contents[i + 1 : i + 1 + radius]])
        for i in range(len(contents))
    ]


def _present_around(conn: Any, project: str, seq: int, radius: int) -> list[tuple[int, int, str]]:
    """Up to ``radius`` present (rowid, seq, content) rows on each side of ``seq``, in log order."""
    before = conn.execute(
        "SELECT rowid, seq, content FROM memory WHERE project = ? AND present = 1 AND seq < ?"
        " ORDER BY seq DESC LIMIT ?",
        (project, seq, radius),
    ).fetchall()
    after = conn.execute(
        "SELECT rowid, seq, content FROM memory WHERE project = ? AND present = 1 AND seq > ? ORDER BY seq LIMIT ?",
        (project, seq, radius),
    ).fetchall()
    return [*before[::-1], *after]


def _affected(conn: Any, project: str, memory_ids: Iterable[str], radius: int) -> dict[int, int]:
    """Row id -> seq of the present memories whose context may have changed: the changed
    memories themselves and the ``radius`` present ones on each side of each."""
    affected: dict[int, int] = {}
    for memory_id in dict.fromkeys(memory_ids):
        row = conn.execute(
            "SELECT rowid, seq, present FROM memory WHERE project = ? AND memory_id = ?", (project, memory_id)
        ).fetchone()
        if row is None:
            continue
        rowid, seq, present = row
        if present:
            affected[rowid] = seq
        affected.update((r, s) for r, s, _content in _present_around(conn, project, seq, radius))
    return affected


def refresh_contexts(conn: Any, project: str, memory_ids: Iterable[str], radius: int = CONTEXT_RADIUS) -> None:
    """Rewrite the context column of every memory near the memories ``memory_ids`` of
    ``project``, whose presence or content changed. Inside the caller's transaction."""
    for rowid, seq in _affected(conn, project, memory_ids, radius).items():
        context = join_context([content for _r, _s, content in _present_around(conn, project, seq, radius)])
        # FTS5 runs an UPDATE as delete + insert of the whole row: skip the rows it would not change.
        conn.execute(
            "UPDATE memory_fts SET context = ? WHERE rowid = ? AND context IS NOT ?", (context, rowid, context)
        )


def stale_contexts(conn: Any, radius: int = CONTEXT_RADIUS) -> int:
    """How many present memories' context differs from what a replay computes (for verify)."""
    rows = conn.execute("SELECT project, rowid, content FROM memory WHERE present = 1 ORDER BY project, seq")
    stored = dict(conn.execute("SELECT rowid, context FROM memory_fts").fetchall())
    stale = 0
    for _project, group in groupby(rows.fetchall(), key=itemgetter(0)):
        project_rows = list(group)
        wanted = contexts_in_order([content for _p, _r, content in project_rows], radius)
        for (_p, rowid, _content), want in zip(project_rows, wanted, strict=True):
            stale += int((stored.get(rowid) or "") != want)
    return stale
