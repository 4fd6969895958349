"""Projection: applying the logs to one index connection, batch by batch.

The caller holds the index lock. Rows and the tracking row advance in one transaction per
batch, so a ``kill -9`` at any moment leaves an index that is the fold of a prefix of each log
and resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from eventlog import EventStore, LogLine, MemorySaved, UnsupportedEventVersion

from .apply import apply_ops, delete_project, mark_vectors_incomplete, read_current
from .context import refresh_fulltext
from .plan import SetCreated, plan_ops
from .tracking import Tracking, read_tracking, write_tracking

logger = logging.getLogger(__name__)

BATCH_LINES = 512
# Embeds texts; returns float32 vectors as bytes, or None when no embedder can run.
EmbedFn = Callable[[Sequence[str]], list[bytes] | None]
ProgressFn = Callable[[int], None]


def embedding_text(event: MemorySaved) -> str:
    """The text whose embedding stands for a memory in vector search."""
    return event.content


class Projection:
    """Brings one index connection up to date with the logs of an ``EventStore`` (files or
    Redis: it asks the store for heads, entries after a mark, and rewrites; see
    ``eventlog.source``)."""

    def __init__(self, conn: Any, log: EventStore, embed: EmbedFn | None) -> None:
        self.conn = conn
        self.log = log
        self.embed = embed
        self.vectors_missing = False
        self._reported_stalls: set[str] = set()

    def project_log(self, project: str, progress: ProgressFn | None = None) -> int:
        """Apply what is new in ``project``'s log; return the number of events applied."""
        head = self.log.heads([project])[project]
        t = read_tracking(self.conn, project)
        if head is None:
            if t is not None:
                logger.warning("log of project %r is gone; removing its memories from the index", project)
                self._transaction(lambda: delete_project(self.conn, project))
            return 0
        if t is not None and self.log.is_rewritten(project, t.mark):
            logger.warning("log of project %r was rewritten (truncated, replaced or merged); rescanning", project)
            self._transaction(lambda: delete_project(self.conn, project))
            t = None
        t = t or Tracking(project)
        t = t.advanced(mark=replace(t.mark, identity=head.identity), stalled=None)
        return self._scan(t, head.token, progress)

    def _scan(self, t: Tracking, head_token: str, progress: ProgressFn | None) -> int:
        applied, batch = 0, []
        # Batches before the last record no head, so a scan cut short (kill -9, an error)
        # leaves the log pending; only the final batch records the head seen before reading.
        t = t.advanced(seen_head=None)
        try:
            for line in self.log.scan_after(t.project, t.mark):
                batch.append(line)
                if len(batch) >= BATCH_LINES:
                    t, applied = self._apply(t, batch), applied + _count_events(batch)
                    if progress:
                        progress(batch[-1].end - batch[0].start)
                    batch = []
        except UnsupportedEventVersion as e:
            t = t.advanced(stalled=str(e))
            if t.project not in self._reported_stalls:
                self._reported_stalls.add(t.project)
                logger.error("projection of project %r stopped: %s", t.project, e)
        t = self._apply(t.advanced(seen_head=head_token), batch)
        if progress and batch:
            progress(batch[-1].end - batch[0].start)
        return applied + _count_events(batch)

    def _apply(self, t: Tracking, lines: list[LogLine]) -> Tracking:
        saves = [line.event for line in lines if isinstance(line.event, MemorySaved)]
        vectors = self._vectors(saves)
        for line in lines:
            if line.event is None:
                level = logging.INFO if line.unknown_type else logging.WARNING
                logger.log(level, "project %r line %d skipped: %s", t.project, line.line_no, line.problem)
        if lines:
            last = lines[-1]
            t = t.advanced(mark=last.advance(t.mark), bad_lines=t.bad_lines + len(lines) - _count_events(lines))

        def write() -> None:
            if len(vectors) < len(saves):
                # Recorded with the rows, so even a projector killed right after this batch
                # leaves a mark that makes the next catch-up with a model fill them in.
                mark_vectors_incomplete(self.conn)
            changed: list[str] = []  # memories whose presence or content changed
            for line in lines:
                if line.event is not None:
                    current = read_current(self.conn, line.event.project, line.event.memory_id)
                    ops = plan_ops(line.event, current)
                    apply_ops(self.conn, ops, vectors, line.line_no)
                    if any(not isinstance(op, SetCreated) for op in ops):
                        changed.append(line.event.memory_id)
            # Once per batch, after its rows: a memory near several changes is rewritten once.
            refresh_fulltext(self.conn, t.project, changed)
            write_tracking(self.conn, t)

        self._transaction(write)
        return t

    def _vectors(self, saves: list[MemorySaved]) -> dict[str, bytes]:
        if not saves or self.embed is None:
            self.vectors_missing = self.vectors_missing or bool(saves)
            return {}
        blobs = self.embed([embedding_text(e) for e in saves])
        if blobs is None:
            self.vectors_missing = True
            return {}
        return {e.event_id: blob for e, blob in zip(saves, blobs, strict=True)}

    def _transaction(self, work: Callable[[], None]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            work()
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


def _count_events(lines: list[LogLine]) -> int:
    return sum(1 for line in lines if line.event is not None)
