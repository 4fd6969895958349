"""Event ids and timestamps: ULIDs that never go backwards within a process.

A save and a forget of the same memory made in the same millisecond must order as they were
made, so ids are monotonic: same millisecond -> previous randomness + 1.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone

_RANDOM_BITS = 80
_lock = threading.Lock()
_last_ms = 0
_last_random = 0


_last_second: tuple[int, str] = (-1, "")


def format_ts(ms: int) -> str:
    """UTC ISO-8601 with milliseconds and a ``Z``: sorts lexicographically by time."""
    global _last_second
    second, milli = divmod(ms, 1000)
    cached_second, prefix = _last_second  # one tuple read: safe without the lock
    if second != cached_second:
        # Formatting the date costs more than the rest of a stamp: once per second is enough.
        prefix = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
        _last_second = (second, prefix)
    return f"{prefix}{milli:03d}Z"


def parse_ts(ts: str) -> int:
    """Milliseconds since the epoch of a timestamp written by ``format_ts``."""
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000 + 0.5)


def next_stamp(not_before_ms: int = 0) -> tuple[str, str]:
    """Return ``(event_id, ts)`` for a new event, strictly after every earlier one here.

    ``not_before_ms`` lets a caller place an event after one it has seen (a forget after the
    save it undoes, even if that save came from a machine whose clock runs ahead).
    """
    global _last_ms, _last_random
    with _lock:
        ms = max(time.time_ns() // 1_000_000, not_before_ms)
        if ms <= _last_ms:
            ms, random_part = _last_ms, _last_random + 1
            if random_part >> _RANDOM_BITS:  # overflow of the 80 random bits: next millisecond
                ms, random_part = ms + 1, int.from_bytes(os.urandom(10), "big") >> 1
        else:
            # Leave headroom so the increments of one millisecond never overflow.
            random_part = int.from_bytes(os.urandom(10), "big") >> 1
        _last_ms, _last_random = ms, random_part
    # Imported on the first write, not at start-up: ``ulid`` imports ``importlib.metadata`` to
    # read its own version, ~20 ms of a read-only command's start (a server's SDK imports that
    # module anyway; BENCHMARKS.md, "MCP server over stdio").
    from ulid import ULID

    event_id = ULID.from_bytes(ms.to_bytes(6, "big") + random_part.to_bytes(10, "big"))
    return str(event_id), format_ts(ms)
