"""The index schema (DDL) and its version. A schema change bumps ``SCHEMA_VERSION``; an index
of another version is rebuilt from the logs, never migrated by hand."""

from __future__ import annotations

SCHEMA_VERSION = 3  # 2: tracking holds a backend's mark; 3: neighbour context, binary codes in vec0, floats beside it

TABLES = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per memory ever seen, tombstones included (present = 0, content NULL).
CREATE TABLE IF NOT EXISTS memory (
    rowid           INTEGER PRIMARY KEY,
    project         TEXT NOT NULL,
    memory_id       TEXT NOT NULL,
    present         INTEGER NOT NULL,
    content         TEXT,
    tags            TEXT,            -- JSON list
    importance      INTEGER,
    kind            TEXT,
    meta            TEXT,            -- JSON object
    created_at      TEXT,            -- earliest save of this memory
    updated_at      TEXT NOT NULL,   -- timestamp of the deciding event
    winner_event_id TEXT NOT NULL,   -- event id of the deciding event
    seq             INTEGER NOT NULL, -- line of the log where the memory first appeared
    UNIQUE (project, memory_id)
);
CREATE INDEX IF NOT EXISTS memory_by_project
    ON memory (project, present, importance, updated_at);
-- The present memories around a position, for the neighbour context (projector/context.py).
CREATE INDEX IF NOT EXISTS memory_by_seq ON memory (project, present, seq);
CREATE TABLE IF NOT EXISTS memory_tag (
    memory_rowid INTEGER NOT NULL,
    project      TEXT NOT NULL,
    tag          TEXT NOT NULL,
    PRIMARY KEY (memory_rowid, tag)
);
CREATE INDEX IF NOT EXISTS memory_tag_by_project ON memory_tag (project, tag);
-- context: the content of the memories saved around this one (projector/context.py).
CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5(
    content, tags, context,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
-- The float32 embedding of each memory that has one, read only to re-score the few candidates
-- the binary codes in memory_vec found (a plain table: a vec0 point lookup costs ~0.15 ms).
CREATE TABLE IF NOT EXISTS memory_embedding (
    rowid  INTEGER PRIMARY KEY,
    vector BLOB NOT NULL
);
-- Per log: how far it has been applied, and enough to notice it was rewritten under us. The
-- position is the log backend's mark: a file's byte offset and identity, or a stream's entry id.
CREATE TABLE IF NOT EXISTS tracking (
    project     TEXT PRIMARY KEY,
    offset      INTEGER NOT NULL,  -- what was applied: bytes of a file, entries of a stream
    line_no     INTEGER NOT NULL,  -- number of the next line (entry) to read
    entry_id    TEXT NOT NULL DEFAULT '',  -- stream: id of the last applied entry
    last_start  INTEGER NOT NULL,  -- file: byte offset where the last applied line starts
    last_hash   TEXT NOT NULL,     -- sha256 of the last applied line or entry ('' at the start)
    identity    TEXT NOT NULL DEFAULT '',  -- file: "dev:ino" of the file that was read
    seen_head   TEXT,              -- the log's head token after the last complete read
    bad_lines   INTEGER NOT NULL DEFAULT 0,
    stalled     TEXT               -- why projection of this log stopped, if it did
);
"""


def vector_table_sql(dim: int) -> str:
    """The vec0 table of binary codes (one bit per dimension, its sign), partitioned by project,
    with the metadata columns that KNN filters inside its scan. ``created_ms`` is an integer
    (epoch milliseconds) because vec0 compares long TEXT metadata ~30x slower than integers."""
    return (
        "CREATE VIRTUAL TABLE IF NOT EXISTS memory_vec USING vec0("
        "project TEXT PARTITION KEY, "
        f"code BIT[{int(dim)}], "
        "importance INTEGER, created_ms INTEGER)"
    )
