"""Tracking rows: how far each log has been applied, and whether it changed under us.

The position itself is the log backend's ``Mark`` (a byte offset and file identity, or a stream
entry id); this module only stores it and compares heads, never asks which backend it is."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from eventlog import Head, Mark


@dataclass(frozen=True, slots=True)
class Tracking:
    """The applied position in one project's log, and how its reading went."""

    project: str
    mark: Mark = field(default_factory=Mark)
    seen_head: str | None = None  # the log's head token after the last complete read
    bad_lines: int = 0
    stalled: str | None = None

    def advanced(self, **changes: Any) -> Tracking:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


_COLUMNS = "project, offset, line_no, entry_id, last_start, last_hash, identity, seen_head, bad_lines, stalled"


def _tracking(row: Any) -> Tracking:
    project, offset, line_no, entry_id, last_start, last_hash, identity, seen_head, bad_lines, stalled = row
    mark = Mark(offset, line_no, entry_id, last_start, last_hash, identity)
    return Tracking(project, mark, seen_head, bad_lines, stalled)


def read_tracking(conn: Any, project: str) -> Tracking | None:
    """The tracking row of ``project``, if it was ever projected."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM tracking WHERE project = ?", (project,)).fetchone()
    return _tracking(row) if row else None


def read_all_tracking(conn: Any) -> dict[str, Tracking]:
    """Every tracking row by project."""
    return {row[0]: _tracking(row) for row in conn.execute(f"SELECT {_COLUMNS} FROM tracking")}


def write_tracking(conn: Any, t: Tracking) -> None:
    """Insert or replace a tracking row (inside the caller's transaction)."""
    conn.execute(
        f"INSERT OR REPLACE INTO tracking ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (t.project, t.mark.offset, t.mark.line_no, t.mark.entry_id, t.mark.last_start, t.mark.last_hash,
         t.mark.identity, t.seen_head, t.bad_lines, t.stalled),
    )


def is_pending(t: Tracking | None, head: Head | None) -> bool:
    """True if the log may hold something the index has not applied (one cheap head look)."""
    if head is None:
        return t is not None  # the log vanished: its rows must go
    if t is None:
        return head.size > 0
    return head.token != t.seen_head
