"""Helpers shared by the projector tests and their child processes (not a test module).

Importable because ``conftest.py`` puts this directory on ``sys.path``; child processes run
``_child.py`` from here, so it is on their path as the script's directory.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from eventlog import Event, EventLog, UnsupportedEventVersion, fold
from projector.errors import EmbedderUnavailable
from projector.query import epoch_ms

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHILD = HERE / "_child.py"

_WORDS = re.compile(r"\w+")

Row = tuple[Any, ...]
Rows = dict[tuple[str, str], Row]


class FakeEmbedder:
    """A deterministic stand-in for a model: the normalized sum of one pseudo-random vector per
    word (seeded by model id and word), so texts sharing words are near each other and
    another model id gives other vectors. ``fail = True`` makes it unavailable."""

    def __init__(self, model_id: str = "fake-v1", dim: int = 16) -> None:
        self.model_id = model_id
        self.dim = dim
        self.fail = False
        self.calls = 0
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.fail:
            raise EmbedderUnavailable(f"{self.model_id} is switched off for this test")
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORDS.findall(text.lower()) or [text]:
                out[row] += self._word_vector(word)
        norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return (out / norms).astype(np.float32)

    def _word_vector(self, word: str) -> np.ndarray:
        digest = hashlib.sha256(f"{self.model_id}\0{word}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        return rng.standard_normal(self.dim).astype(np.float32)


# -- what the index holds, and what it must hold ------------------------------------------


def index_rows(conn: Any) -> Rows:
    """Every row of the ``memory`` table, tombstones included, in comparable form."""
    rows: Rows = {}
    for r in conn.execute(
        "SELECT project, memory_id, present, content, tags, importance, kind, meta, created_at,"
        " updated_at, winner_event_id FROM memory"
    ):
        tags = tuple(orjson.loads(r[4])) if r[4] is not None else None
        meta = orjson.loads(r[7]) if r[7] is not None else None
        rows[(r[0], r[1])] = (bool(r[2]), r[3], tags, r[5], r[6], meta, r[8], r[9], r[10])
    return rows


def table_rows(conn: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Every column of every ``memory`` row but the row id (which differs between builds),
    so that columns beyond the fold's (such as ``seq``) are compared too."""
    cursor = conn.execute("SELECT * FROM memory")
    names = [d[0] for d in cursor.description]
    rows = {}
    for values in cursor:
        row = dict(zip(names, values, strict=True))
        row.pop("rowid", None)
        rows[(row["project"], row["memory_id"])] = row
    return rows


def fold_rows(events: Iterable[Event]) -> Rows:
    """The rows the index must hold for ``events``: ``eventlog.fold``, written as rows."""
    rows: Rows = {}
    for key, s in fold(events).items():
        e = s.saved
        attrs = (e.content, tuple(e.tags), e.importance, e.kind, e.meta) if e else (None,) * 5
        rows[key] = (e is not None, *attrs, s.created_at, s.winner[0], s.winner[1])
    return rows


def log_events(log: EventLog, project: str, upto: int | None = None) -> list[Event]:
    """The good events of a project's log whose lines end at or before byte ``upto``."""
    events: list[Event] = []
    try:
        for line in log.scan(project):
            if upto is not None and line.end > upto:
                break
            if line.event is not None:
                events.append(line.event)
    except UnsupportedEventVersion:
        pass  # projection stops there too
    return events


def all_events(log: EventLog) -> list[Event]:
    """The good events of every log (each read up to a newer-version line, if any)."""
    return [e for p in log.projects() for e in log_events(log, p)]


def tracked_events(log: EventLog, conn: Any) -> list[Event]:
    """The events of every log up to the position its tracking row says was applied."""
    events: list[Event] = []
    for project, offset in conn.execute("SELECT project, offset FROM tracking"):
        events.extend(log_events(log, project, offset))
    return events


def derived_problems(conn: Any, vectors_expected: bool) -> list[str]:
    """Disagreements between ``memory`` and the tables derived from it (FTS, tags, vectors)."""
    problems = []
    present = {r[0]: r for r in conn.execute(
        "SELECT rowid, project, content, tags, importance, created_at FROM memory WHERE present = 1"
    )}
    fts = {r[0]: r[1:] for r in conn.execute("SELECT rowid, content, tags FROM memory_fts")}
    if set(fts) != set(present):
        problems.append(f"full-text rows {sorted(fts)} != present rows {sorted(present)}")
    for rowid, (content, tags) in fts.items():
        if rowid in present and (content, tags) != (present[rowid][2], " ".join(orjson.loads(present[rowid][3]))):
            problems.append(f"full-text row {rowid} differs from its memory")
    problems.extend(_context_problems(conn))
    want_tags = {(rowid, r[1], t.lower()) for rowid, r in present.items() for t in orjson.loads(r[3])}
    got_tags = set(conn.execute("SELECT memory_rowid, project, tag FROM memory_tag"))
    if want_tags != got_tags:
        problems.append(f"tag rows differ: extra {got_tags - want_tags}, missing {want_tags - got_tags}")
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'memory_vec'").fetchone():
        vec = {r[0]: r[1:] for r in conn.execute("SELECT rowid, project, importance, created_ms FROM memory_vec")}
        if not set(vec) <= set(present):
            problems.append(f"vectors of absent memories: {sorted(set(vec) - set(present))}")
        if vectors_expected and set(vec) != set(present):
            problems.append(f"present memories without a vector: {sorted(set(present) - set(vec))}")
        for rowid, (project, importance, created_ms) in vec.items():
            memory = present.get(rowid)
            if memory and (project, importance, created_ms) != (memory[1], memory[4], epoch_ms(memory[5])):
                problems.append(f"vector metadata of row {rowid} differs from its memory")
        floats = {r[0] for r in conn.execute("SELECT rowid FROM memory_embedding")}
        if floats != set(vec):
            problems.append(f"float embeddings {sorted(floats)} != binary codes {sorted(vec)}")
    elif vectors_expected and present:
        problems.append("no vector table although vectors are expected")
    return problems


def _context_problems(conn: Any) -> list[str]:
    """Full-text rows whose neighbour context is not the one a replay of the present rows gives."""
    from projector.context import contexts_in_order

    stored = dict(conn.execute("SELECT rowid, context FROM memory_fts"))
    problems = []
    for (project,) in conn.execute("SELECT DISTINCT project FROM memory WHERE present = 1").fetchall():
        rows = conn.execute(
            "SELECT rowid, content FROM memory WHERE project = ? AND present = 1 ORDER BY seq", (project,)
        ).fetchall()
        for (rowid, _content), want in zip(rows, contexts_in_order([r[1] for r in rows]), strict=True):
            if stored.get(rowid) != want:
                problems.append(f"context of row {rowid} is {stored.get(rowid)!r}, a replay gives {want!r}")
    return problems


def diff_rows(want: Rows, got: Rows) -> list[str]:
    """Human-readable differences between two row sets (empty when equal)."""
    out = []
    for key in sorted(want.keys() | got.keys()):
        if want.get(key) != got.get(key):
            out.append(f"{key}: expected {want.get(key)!r}, index has {got.get(key)!r}")
    return out


# -- child processes ---------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """Environment for child processes that import this checkout's packages."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def write_events(log: EventLog, project: str, count: int, prefix: str = "memory", tags: int = 7) -> list[str]:
    """Append ``count`` distinct saves in batches (fast with durability ``never``); return ids."""
    ids: list[str] = []
    batch: list[Event] = []
    for i in range(count):
        event = log.build_save(
            project,
            f"{prefix} {i}: note about topic{i % 37} and item{i % 101} in {project}",
            tags=[f"tag{i % tags}"],
            importance=1 + i % 10,
        )
        batch.append(event)
        ids.append(event.memory_id)
        if len(batch) == 500:
            log.append(project, batch)
            batch = []
    log.append(project, batch)
    return ids
