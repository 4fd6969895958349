"""Tracking rows: how far each log has been applied, and whether it changed under us."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Tracking:
    """The applied position in one project's log and the identity of the file it was in."""

    project: str
    offset: int = 0
    line_no: int = 1
    dev: int = 0
    ino: int = 0
    last_start: int = 0
    last_hash: str = ""
    bad_lines: int = 0
    stalled: str | None = None
    seen_size: int = 0  # file size at the last scan: a torn tail is not re-read until it grows

    def advanced(self, **changes: Any) -> Tracking:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


_COLUMNS = "project, offset, line_no, dev, ino, last_start, last_hash, bad_lines, stalled, seen_size"


def read_tracking(conn: Any, project: str) -> Tracking | None:
    """The tracking row of ``project``, if it was ever projected."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM tracking WHERE project = ?", (project,)).fetchone()
    return Tracking(*row) if row else None


def read_all_tracking(conn: Any) -> dict[str, Tracking]:
    """Every tracking row by project."""
    return {row[0]: Tracking(*row) for row in conn.execute(f"SELECT {_COLUMNS} FROM tracking")}


def write_tracking(conn: Any, t: Tracking) -> None:
    """Insert or replace a tracking row (inside the caller's transaction)."""
    conn.execute(
        f"INSERT OR REPLACE INTO tracking ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (t.project, t.offset, t.line_no, t.dev, t.ino, t.last_start, t.last_hash, t.bad_lines, t.stalled,
         t.seen_size),
    )


def is_pending(t: Tracking | None, st: os.stat_result | None) -> bool:
    """True if the log may hold something the index has not applied (one ``stat``'s worth)."""
    if st is None:
        return t is not None  # the log vanished: its rows must go
    if t is None:
        return st.st_size > 0
    return (st.st_size, st.st_dev, st.st_ino) != (t.seen_size, t.dev, t.ino)


def is_rewritten(t: Tracking, st: os.stat_result, path: Path) -> bool:
    """True if the log is no longer the file whose prefix was applied (truncated, replaced,
    compacted, rewritten by a git merge): then it must be rescanned from the start."""
    if t.offset == 0:
        return False
    if (st.st_dev, st.st_ino) != (t.dev, t.ino) or st.st_size < t.offset:
        return True
    with open(path, "rb") as f:
        f.seek(t.last_start)
        last_line = f.read(t.offset - t.last_start)
    return hashlib.sha256(last_line).hexdigest() != t.last_hash
