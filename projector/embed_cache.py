"""The embedding cache: ``cache/embeddings.db``, vectors keyed by (model id, sha256 of the text).

Derived data shared by every process of a store, so it is forgiving: a corrupt file is replaced
by an empty one, and a cache that cannot be read or written right now (locked past the busy
timeout, read-only disk) is a miss, logged once, never an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from eventlog.paths import FILE_MODE, ensure_dir

from .db import retry_busy

logger = logging.getLogger(__name__)

T = TypeVar("T")
Vector = npt.NDArray[np.float32]

SCHEMA = """
CREATE TABLE IF NOT EXISTS embedding (
    model_id TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    vector BLOB NOT NULL,  -- little-endian float32
    PRIMARY KEY (model_id, text_sha256)
) WITHOUT ROWID
"""
BUSY_TIMEOUT_SECONDS = 10.0
# Keys per ``IN (...)`` query: SQLite builds before 3.32 allow only 999 bound variables.
KEYS_PER_QUERY = 500
BLOB_DTYPE = np.dtype("<f4")  # fixed byte order: the file may move between machines
# Primary result codes of "this file is not a (sane) database": SQLITE_CORRUPT, SQLITE_NOTADB.
CORRUPT_CODES = frozenset({11, 26})


def text_key(text: str) -> bytes:
    """The cache key of a text: the sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def encode_vector(vector: npt.ArrayLike) -> bytes:
    """A vector as the blob stored in the cache (little-endian float32)."""
    return np.asarray(vector, dtype=BLOB_DTYPE).tobytes()


def decode_vector(blob: bytes) -> Vector:
    """A stored blob as a writable float32 vector."""
    return np.frombuffer(blob, dtype=BLOB_DTYPE).astype(np.float32)


def is_corrupt(error: sqlite3.Error) -> bool:
    """Whether SQLite says the file is not a database or is malformed (not merely busy)."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.DatabaseError) and code is not None and code & 0xFF in CORRUPT_CODES


class EmbeddingCache:
    """Vectors by (model id, text hash) in one SQLite file; opened on first use, thread-safe."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        # One connection shared by the worker threads the MCP server runs sync tools in;
        # the lock serializes them (lookups take well under a millisecond).
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._warned = False

    def get_many(self, model_id: str, texts: Sequence[str]) -> dict[int, Vector]:
        """Cached vectors of ``texts``, by index in ``texts``; misses are absent."""
        positions: dict[bytes, list[int]] = {}
        for i, text in enumerate(texts):
            positions.setdefault(text_key(text), []).append(i)
        if not positions:
            return {}
        rows: list[tuple[bytes, bytes]] = self._run(lambda conn: _select(conn, model_id, list(positions)), [])
        found: dict[int, Vector] = {}
        for key, blob in rows:
            vector = decode_vector(blob)
            for i in positions[bytes(key)]:
                found[i] = vector
        return found

    def put_many(self, model_id: str, texts: Sequence[str], vectors: npt.ArrayLike) -> None:
        """Store one vector per text (row ``i`` of ``vectors`` for ``texts[i]``)."""
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(texts):
            raise ValueError(f"need one vector per text: {len(texts)} texts, array of shape {matrix.shape}")
        rows = [(model_id, text_key(t), encode_vector(v)) for t, v in zip(texts, matrix)]
        if rows:
            self._run(lambda conn: _insert(conn, rows), None)

    def close(self) -> None:
        """Close the connection (the next call reopens it)."""
        with self._lock:
            self._close()

    # -- connection ----------------------------------------------------------------------

    def _run(self, operation: Callable[[sqlite3.Connection], T], fallback: T) -> T:
        """``operation`` on the open connection; a corrupt file is recreated once, other
        failures give ``fallback`` (the cache is an optimization, never a reason to fail)."""
        with self._lock:
            for attempt in (1, 2):
                try:  # a lock refused at once is retried (a failed open or write leaves nothing)
                    return retry_busy(lambda: operation(self._connection()))
                except (sqlite3.Error, OSError) as e:
                    if attempt == 1 and isinstance(e, sqlite3.Error) and is_corrupt(e):
                        self._recreate(e)
                        continue
                    self._warn_unusable(e)
                    return fallback
            return fallback

    def _connection(self) -> sqlite3.Connection:
        """The open connection, reopened if the file was replaced or deleted under us (by
        another process that found it corrupt, or by a user clearing the cache)."""
        if self._conn is not None and _file_identity(self.path) == self._identity:
            return self._conn
        self._close()
        self._conn = _open(self.path)
        self._identity = _file_identity(self.path)
        return self._conn

    def _recreate(self, error: sqlite3.Error) -> None:
        logger.warning("embedding cache %s is corrupt (%s); starting an empty one", self.path, error)
        self._close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass

    def _warn_unusable(self, error: Exception) -> None:
        # Once per cache object: a read-only disk would otherwise log on every search.
        if not self._warned:
            self._warned = True
            logger.warning("embedding cache %s unusable (%s); embedding without it", self.path, error)

    def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn, self._identity = self._conn, None, None
            conn.close()


def _open(path: Path) -> sqlite3.Connection:
    """Open (creating it 0600 in a 0700 directory if missing) and set up the cache file."""
    ensure_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass
    # Autocommit (isolation_level=None): reads take no lock beyond the statement, writes are
    # explicit transactions. check_same_thread=False: the owner's lock serializes threads.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
        conn.execute("PRAGMA synchronous=NORMAL")  # derived data: a lost commit is re-embedded
        conn.execute(SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


def _select(conn: sqlite3.Connection, model_id: str, keys: list[bytes]) -> list[tuple[bytes, bytes]]:
    rows: list[tuple[bytes, bytes]] = []
    for start in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[start : start + KEYS_PER_QUERY]
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT text_sha256, vector FROM embedding WHERE model_id = ? AND text_sha256 IN ({marks})"
        rows.extend(conn.execute(sql, [model_id, *chunk]))
    return rows


def _insert(conn: sqlite3.Connection, rows: list[tuple[str, bytes, bytes]]) -> None:
    with conn:  # one transaction per batch: a writer holds the lock briefly
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR REPLACE INTO embedding (model_id, text_sha256, vector) VALUES (?, ?, ?)", rows)


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)
