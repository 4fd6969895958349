"""Opening SQLite with the sqlite-vec extension loaded.

The stdlib ``sqlite3`` of many Pythons (this machine's, macOS system Pythons) is built without
``enable_load_extension``; ``sqlean.py`` has the same API and can, so it is the fallback.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from .errors import SQLiteUnavailable

BUSY_TIMEOUT_MS = 60_000
PAGE_CACHE_KIB = 2000
# SQLITE_BUSY, SQLITE_LOCKED. The busy timeout waits out ordinary contention; these still come
# back at once where waiting could deadlock, e.g. two processes opening a new file both
# switching it to WAL (each holds a shared lock and wants an exclusive one). The other side
# finishes within milliseconds, so a few short retries get through.
BUSY_CODES = frozenset({5, 6})
BUSY_RETRY_SLEEPS = (0.01, 0.03, 0.1, 0.3)

T = TypeVar("T")

_driver: ModuleType | None = None


def _can_load_vec(module: ModuleType) -> bool:
    import sqlite_vec

    try:
        conn = module.connect(":memory:")
        try:
            conn.enable_load_extension(True)
            sqlite_vec.load(conn)
            conn.execute("CREATE VIRTUAL TABLE t USING fts5(a)")
            return True
        finally:
            conn.close()
    except Exception:  # any failure means this driver cannot serve the index
        return False


def driver() -> ModuleType:
    """The sqlite3-compatible module that can load sqlite-vec (stdlib first, then sqlean)."""
    global _driver
    if _driver is not None:
        return _driver
    candidates: list[ModuleType] = [sqlite3]
    try:
        import sqlean

        candidates.append(sqlean)
    except ImportError:
        pass
    for module in candidates:
        if _can_load_vec(module):
            _driver = module
            return module
    raise SQLiteUnavailable(
        "no SQLite here can load extensions: the stdlib sqlite3 lacks enable_load_extension "
        "and sqlean.py is not installed or cannot load sqlite-vec (pip install sqlean.py)"
    )


def database_error() -> type[Exception]:
    """The ``DatabaseError`` class of the driver in use (sqlean has its own)."""
    error: type[Exception] = driver().DatabaseError
    return error


def connect(path: Path | str, *, wal: bool = True) -> Any:
    """A connection with sqlite-vec loaded, a long busy timeout and (by default) WAL mode."""
    module = driver()
    conn = module.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                          isolation_level=None)
    import sqlite_vec

    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # SQLite's share of a server's memory stays small: a 2 MB page cache (the usual default, set
    # here so another driver build cannot change it) and no mmap, whose touched file pages would
    # count as resident. Searching 100k memories measured no faster with 16 MB (the hot pages
    # stay in the OS cache either way).
    conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
    conn.execute("PRAGMA mmap_size = 0")
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
        # With WAL, NORMAL keeps the index consistent after a crash; the logs are the
        # durable truth, so a lost last transaction is simply projected again.
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def is_busy(error: BaseException) -> bool:
    """Whether SQLite gave up on a lock another connection holds (``database is locked``),
    from either driver."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in BUSY_CODES


def retry_busy(operation: Callable[[], T]) -> T:
    """``operation()``, run again after a short pause while SQLite answers "locked" at once
    (``BUSY_RETRY_SLEEPS``); any other error, or the last busy one, is raised. Only for
    operations that leave nothing behind when they fail: an open, or one transaction."""
    for pause in BUSY_RETRY_SLEEPS:
        try:
            return operation()
        except Exception as e:
            if not is_busy(e):
                raise
        time.sleep(pause)
    return operation()
