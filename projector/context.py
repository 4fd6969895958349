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

import orjson

CONTEXT_RADIUS = 2  # measured: 1 gives 0.693/0.780, 2 gives 0.715/0.800, 3 gives 0.707/0.801


def join_context(neighbours: Sequence[str]) -> str:
    """The context column's text for the contents of a memory's neighbours, in log order."""
    return "\n".join(neighbours)


def contexts_in_order(contents: Sequence[str], radius: int = CONTEXT_RADIUS) -> list[str]:
    """The context of each memory of a project, given every present memory's content in log
    order (pure: what a full replay computes, and what ``refresh_fulltext`` must keep equal)."""
    return [
        join_context([*contents[max(0, i - radius) : i], *contents[i + 1 : i + 1 + radius]])
        for i in range(len(contents))
    ]


# Changed memories closer than this (in log lines) share one window of rows: a batch of new
# saves is one window, a forget far back in the log is a window of its own.
WINDOW_GAP = 64


def _changed_seqs(conn: Any, project: str, memory_ids: Iterable[str]) -> list[int]:
    """Log positions of the memories ``memory_ids`` (present or forgotten), sorted."""
    ids = list(dict.fromkeys(memory_ids))
    seqs: list[int] = []
    for start in range(0, len(ids), 500):  # well under SQLite's bound-parameter limit
        chunk = ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        seqs += [r[0] for r in conn.execute(
            f"SELECT seq FROM memory WHERE project = ? AND memory_id IN ({marks})", (project, *chunk)
        )]
    return sorted(set(seqs))


def windows(seqs: Sequence[int], gap: int = WINDOW_GAP) -> list[tuple[int, int]]:
    """Sorted positions grouped into (first, last) spans, split where two are over ``gap`` apart."""
    spans: list[tuple[int, int]] = []
    for seq in seqs:
        if spans and seq - spans[-1][1] <= gap:
            spans[-1] = (spans[-1][0], seq)
        else:
            spans.append((seq, seq))
    return spans


Row = tuple[int, str]  # (rowid, content) of a present memory


def _window_rows(conn: Any, project: str, first: int, last: int, margin: int) -> tuple[list[Row], list[Row], list[Row]]:
    """Present rows of a span: up to ``margin`` before position ``first``, those from
    ``first`` to ``last``, and up to ``margin`` after ``last``; each part in log order."""
    before = conn.execute(
        "SELECT rowid, content FROM memory WHERE project = ? AND present = 1 AND seq < ? ORDER BY seq DESC LIMIT ?",
        (project, first, margin),
    ).fetchall()
    inside = conn.execute(
        "SELECT rowid, content FROM memory WHERE project = ? AND present = 1 AND seq BETWEEN ? AND ? ORDER BY seq",
        (project, first, last),
    ).fetchall()
    after = conn.execute(
        "SELECT rowid, content FROM memory WHERE project = ? AND present = 1 AND seq > ? ORDER BY seq LIMIT ?",
        (project, last, margin),
    ).fetchall()
    return before[::-1], inside, after


def span_contexts(before: Sequence[Row], inside: Sequence[Row], after: Sequence[Row], radius: int) -> dict[int, str]:
    """Row id -> context of every row a change inside the span can affect: the span's rows and
    the ``radius`` nearest on each side. Given ``2 * radius`` rows on each side (or all there
    are), each of those has its whole neighbourhood among the rows given."""
    rows = [*before, *inside, *after]
    contexts = contexts_in_order([content for _rowid, content in rows], radius)
    first = max(0, len(before) - radius)
    stop = len(before) + len(inside) + min(radius, len(after))
    return {rows[i][0]: contexts[i] for i in range(first, stop)}


def _write_fulltext(conn: Any, wanted: dict[int, str]) -> None:
    """Give each row id its full-text row with the ``wanted`` context: insert the missing
    rows (memories saved in this batch), rewrite those whose context changed, skip the rest
    (FTS5 runs an UPDATE as a delete and an insert of the whole row)."""
    rowids = list(wanted)
    for start in range(0, len(rowids), 500):  # well under SQLite's bound-parameter limit
        chunk = rowids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        stored = dict(conn.execute(f"SELECT rowid, context FROM memory_fts WHERE rowid IN ({marks})", chunk).fetchall())
        missing = conn.execute(
            f"SELECT rowid, content, tags FROM memory WHERE rowid IN ({marks})", chunk
        ).fetchall() if len(stored) < len(chunk) else []
        conn.executemany(
            "INSERT INTO memory_fts (rowid, content, tags, context) VALUES (?, ?, ?, ?)",
            [(r, content, " ".join(orjson.loads(tags or "[]")), wanted[r]) for r, content, tags in missing if r not in stored],
        )
        conn.executemany(
            "UPDATE memory_fts SET context = ? WHERE rowid = ?",
            [(wanted[r], r) for r in chunk if r in stored and stored[r] != wanted[r]],
        )


def refresh_fulltext(conn: Any, project: str, memory_ids: Iterable[str], radius: int = CONTEXT_RADIUS) -> None:
    """After the rows of ``memory_ids`` (memories of ``project`` whose presence or content
    changed) were applied: write their full-text rows, and rewrite the context of every present
    memory near them. Inside the caller's transaction.

    A change at one position alters the contexts of at most ``radius`` present memories on
    each side, so each span of nearby changes costs three range reads, not queries per memory."""
    wanted: dict[int, str] = {}
    for first, last in windows(_changed_seqs(conn, project, memory_ids)):
        wanted.update(span_contexts(*_window_rows(conn, project, first, last, 2 * radius), radius))
    _write_fulltext(conn, wanted)


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
