"""A per-project advisory lock (portalocker) with a bounded wait."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import portalocker

from .errors import LockTimeout
from .paths import FILE_MODE

DEFAULT_LOCK_TIMEOUT = 10.0
# Short polls keep a contended lock moving: appends hold it for well under a millisecond
# without fsync and a few milliseconds with it.
CHECK_INTERVAL = 0.0005


@contextmanager
def held(path: Path, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the exclusive advisory lock of ``path``; raise ``LockTimeout`` after ``timeout`` s."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    lock = portalocker.Lock(
        path, mode="a", timeout=timeout, check_interval=CHECK_INTERVAL, fail_when_locked=False
    )
    try:
        lock.acquire()
    except portalocker.LockException as e:
        raise LockTimeout(
            f"could not lock {path.name} within {timeout:g} s; another process holds it "
            "(raise MNEMOLOG_LOCK_TIMEOUT, or look for a stuck process)"
        ) from e
    try:
        yield
    finally:
        lock.release()
