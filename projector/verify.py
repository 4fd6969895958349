"""``verify``: the index compared with a pure replay (fold) of the logs."""

from __future__ import annotations

from typing import Any

import orjson

from eventlog import Event, EventStore, UnsupportedEventVersion, fold

from .apply import has_vector_table
from .context import stale_contexts
from .model import VerifyReport

_ROW = "project, memory_id, present, content, tags, importance, kind, meta, created_at, updated_at, winner_event_id"


def _read_logs(log: EventStore) -> tuple[list[Event], list[str]]:
    """Every good event and every bad line; a log stops at an event newer than this code,
    as its projection does, so the index is compared with the part it can hold."""
    events: list[Event] = []
    problems: list[str] = []
    for project in log.projects():
        try:
            for line in log.scan(project):
                if line.event is not None:
                    events.append(line.event)
                else:
                    problems.append(f"{project} line {line.line_no}: {line.problem}")
        except UnsupportedEventVersion as e:
            problems.append(f"{project}: reading stopped: {e}")
    return events, problems


def _expected(events: list[Event]) -> dict[tuple[str, str], tuple[Any, ...]]:
    states = fold(events)
    expected = {}
    for key, s in states.items():
        e = s.saved
        attrs = (e.content, list(e.tags), e.importance, e.kind, e.meta) if e else (None, None, None, None, None)
        expected[key] = (int(e is not None), *attrs, s.created_at, s.winner[0], s.winner[1])
    return expected


def _actual(conn: Any) -> dict[tuple[str, str], tuple[Any, ...]]:
    actual = {}
    for row in conn.execute(f"SELECT {_ROW} FROM memory"):
        tags = orjson.loads(row[4]) if row[4] is not None else None
        meta = orjson.loads(row[7]) if row[7] is not None else None
        actual[(row[0], row[1])] = (row[2], row[3], tags, row[5], row[6], meta, row[8], row[9], row[10])
    return actual


_FIELDS = ("present", "content", "tags", "importance", "kind", "meta", "created_at", "updated_at", "event_id")


def _row_differences(expected: dict[Any, Any], actual: dict[Any, Any]) -> list[str]:
    out = []
    for key in sorted(expected.keys() | actual.keys()):
        project, memory_id = key
        if key not in actual:
            out.append(f"{project}/{memory_id}: in the logs, missing from the index")
        elif key not in expected:
            out.append(f"{project}/{memory_id}: in the index, not in the logs")
        else:
            for name, want, got in zip(_FIELDS, expected[key], actual[key], strict=True):
                if want != got:
                    out.append(f"{project}/{memory_id}: {name} is {got!r} in the index, {want!r} in the logs")
    return out


def _derived_differences(conn: Any, vectors_expected: bool) -> list[str]:
    checks = {
        "present memories without full-text row": "SELECT count(*) FROM memory WHERE present = 1 AND rowid NOT IN (SELECT rowid FROM memory_fts)",
        "full-text rows of absent memories": "SELECT count(*) FROM memory_fts WHERE rowid NOT IN (SELECT rowid FROM memory WHERE present = 1)",
        "tag rows of absent memories": "SELECT count(*) FROM memory_tag WHERE memory_rowid NOT IN (SELECT rowid FROM memory WHERE present = 1)",
    }
    if has_vector_table(conn):
        checks["vectors of absent memories"] = "SELECT count(*) FROM memory_vec WHERE rowid NOT IN (SELECT rowid FROM memory WHERE present = 1)"
        if vectors_expected:
            checks["present memories without vector"] = "SELECT count(*) FROM memory WHERE present = 1 AND rowid NOT IN (SELECT rowid FROM memory_vec)"
        checks["binary codes without float embedding"] = "SELECT count(*) FROM memory_vec WHERE rowid NOT IN (SELECT rowid FROM memory_embedding)"
        checks["float embeddings without binary code"] = "SELECT count(*) FROM memory_embedding WHERE rowid NOT IN (SELECT rowid FROM memory_vec)"
    out = []
    for label, sql in checks.items():
        n = conn.execute(sql).fetchone()[0]
        if n:
            out.append(f"{n} {label}")
    stale = stale_contexts(conn)
    if stale:
        out.append(f"{stale} full-text rows with a stale neighbour context")
    return out


def _problems(conn: Any, log_problems: list[str]) -> list[str]:
    out = list(log_problems)
    for project, stalled in conn.execute("SELECT project, stalled FROM tracking WHERE stalled IS NOT NULL"):
        out.append(f"{project}: projection stopped: {stalled}")
    return out


def verify_index(conn: Any, log: EventStore, model_id: str) -> VerifyReport:
    """Differences between the index and the fold of the logs, plus the logs' bad lines."""
    complete = conn.execute("SELECT value FROM meta WHERE key = 'vectors_complete'").fetchone()
    vectors_expected = bool(model_id) and (complete is None or complete[0] != "0")
    events, log_problems = _read_logs(log)
    differences = _row_differences(_expected(events), _actual(conn)) + _derived_differences(conn, vectors_expected)
    return VerifyReport(ok=not differences, differences=differences, problems=_problems(conn, log_problems))
