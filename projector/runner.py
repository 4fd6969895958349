"""Projection: applying the logs to one index connection, batch by batch.

The caller holds the index lock. Rows and the tracking row advance in one transaction per
batch, so a ``kill -9`` at any moment leaves an index that is the fold of a prefix of each log
and resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from eventlog import EventLog, MemorySaved, UnsupportedEventVersion
from eventlog.reader import LogLine

from .apply import apply_ops, delete_project, mark_vectors_incomplete, read_current
from .plan import plan_ops
from .tracking import Tracking, is_rewritten, read_tracking, write_tracking

logger = logging.getLogger(__name__)

BATCH_LINES = 512
# Embeds texts; returns float32 vectors as bytes, or None when no embedder can run.
EmbedFn = Callable[[Sequence[str]], list[bytes] | None]
ProgressFn = Callable[[int], None]


def embedding_text(event: MemorySaved) -> str:
    """The text whose embedding stands for a memory in vector search."""
    return event.content


class Projection:
    """Brings one index connection up to date with the logs of an ``EventLog``."""

    def __init__(self, conn: Any, log: EventLog, embed: EmbedFn | None) -> None:
        self.conn = conn
        self.log = log
        self.embed = embed
        self.vectors_missing = False
        self._reported_stalls: set[str] = set()

    def project_log(self, project: str, progress: ProgressFn | None = None) -> int:
        """Apply what is new in ``project``'s log; return the number of events applied."""
        path = self.log.log_path(project)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if read_tracking(self.conn, project) is not None:
                logger.warning("log of project %r is gone; removing its memories from the index", project)
                self._transaction(lambda: delete_project(self.conn, project))
            return 0
        t = read_tracking(self.conn, project)
        if t is not None and is_rewritten(t, st, path):
            logger.warning("log of project %r was rewritten (truncated, replaced or merged); rescanning", project)
            self._transaction(lambda: delete_project(self.conn, project))
            t = None
        t = (t or Tracking(project)).advanced(dev=st.st_dev, ino=st.st_ino, seen_size=st.st_size, stalled=None)
        return self._scan(t, progress)

    def _scan(self, t: Tracking, progress: ProgressFn | None) -> int:
        applied, batch = 0, []
        # Batches before the last record an impossible size, so a scan cut short (kill -9,
        # an error) leaves the log pending; only the final batch records the size seen.
        seen_size, t = t.seen_size, t.advanced(seen_size=-1)
        try:
            for line in self.log.scan(t.project, t.offset, t.line_no):
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
        t = self._apply(t.advanced(seen_size=seen_size), batch)
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
            t = t.advanced(
                offset=last.end, line_no=last.line_no + 1, last_start=last.start,
                last_hash=last.digest, bad_lines=t.bad_lines + len(lines) - _count_events(lines),
            )

        def write() -> None:
            if len(vectors) < len(saves):
                # Recorded with the rows, so even a projector killed right after this batch
                # leaves a mark that makes the next catch-up with a model fill them in.
                mark_vectors_incomplete(self.conn)
            for line in lines:
                if line.event is not None:
                    current = read_current(self.conn, line.event.project, line.event.memory_id)
                    apply_ops(self.conn, plan_ops(line.event, current), vectors, line.line_no)
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
