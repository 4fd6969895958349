"""A per-project advisory lock with a bounded wait.

On POSIX this calls ``flock`` directly: it is what portalocker uses there, so a lock taken
with portalocker in another process excludes us and the other way round, but portalocker's
``Lock`` object costs ~50 us per acquisition, as much as the rest of a save. Elsewhere
(Windows) portalocker's lock functions are used.

Each acquisition opens its own descriptor, so the lock also excludes other threads of this
process and is never shared with a forked child; closing the descriptor releases it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LockTimeout
from .paths import FILE_MODE

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import portalocker

DEFAULT_LOCK_TIMEOUT = 10.0
# Short polls keep a contended lock moving: appends hold it for tens of microseconds (the
# fsync happens after the lock is released).
CHECK_INTERVAL = 0.0005


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock of ``fd`` if it is free; False if another holder has it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    try:  # pragma: no cover - Windows
        portalocker.lock(fd, portalocker.LOCK_EX | portalocker.LOCK_NB)
    except portalocker.LockException:
        return False
    return True


def _unlock(fd: int) -> None:
    if fcntl is None:  # pragma: no cover - Windows
        portalocker.unlock(fd)
    # On POSIX closing the descriptor releases the lock.


@contextmanager
def held(path: Path, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the exclusive advisory lock of ``path``; raise ``LockTimeout`` after ``timeout`` s."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        if not _try_lock(fd):
            deadline = time.monotonic() + timeout
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"could not lock {path.name} within {timeout:g} s; another process "
                        "holds it (raise MNEMOLOG_LOCK_TIMEOUT, or look for a stuck process)"
                    )
                time.sleep(CHECK_INTERVAL)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)
