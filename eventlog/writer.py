"""Appending lines to a log file: one ``write()`` under the project's lock, then ``fsync``."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

from .lock import DEFAULT_LOCK_TIMEOUT, held
from .paths import FILE_MODE


class Durability(str, Enum):
    """``always``: fsync every append (default). ``never``: leave it to the OS (bulk import)."""

    ALWAYS = "always"
    NEVER = "never"


def _ends_torn(fd: int) -> bool:
    """True if the file is non-empty and its last byte is not a newline (a crashed writer)."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _write_all(fd: int, data: bytes) -> None:
    # One write() normally takes everything; loop only for the rare short write.
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync(fd: int) -> None:
    # fdatasync flushes the data and the new size, skipping the mtime-only metadata write.
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def append_lines(
    log: Path,
    lock: Path,
    data: bytes,
    durability: Durability = Durability.ALWAYS,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> None:
    """Append ``data`` (complete ``\\n``-terminated lines) to ``log`` under ``lock``.

    A torn final line left by a crashed writer is first terminated, so it becomes one bad
    line that readers report, never glued to the new event.
    """
    if not data.endswith(b"\n"):
        raise ValueError("append_lines takes complete lines")
    created = False
    try:
        fd = os.open(log, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        fd = os.open(log, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
        created = True
    try:
        with held(lock, lock_timeout):
            _write_all(fd, (b"\n" + data) if _ends_torn(fd) else data)
        # Sync after releasing the lock: the order of lines is already fixed, and writers
        # that sync at the same time share one flush instead of queueing behind each other.
        if durability is Durability.ALWAYS:
            _sync(fd)
            if created:
                _sync_dir(log.parent)
    finally:
        os.close(fd)


def _sync_dir(directory: Path) -> None:
    # A new file's name lives in its directory: without this, a power cut could lose the
    # whole first log of a project even though its data was synced.
    if os.name != "posix":  # pragma: no cover - directories cannot be opened on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_file(log: Path) -> None:
    """fsync ``log`` and its directory: the one flush that follows a bulk load."""
    fd = os.open(log, os.O_RDONLY)
    try:
        _sync(fd)
    finally:
        os.close(fd)
    _sync_dir(log.parent)
