"""Catching the index up shortly after a log changes, debounced per project.

The notices come from the log backend's ``watch``: a file watcher, for logs that appear or are
swapped (a git pull; appends are indexed by their writer), or a blocking ``XREAD`` on Redis,
for every write (another machine's included). Only an optimisation: every read catches up
first anyway, so if no notices can be had (inotify limits, network file systems) correctness
does not change."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from eventlog import EventStore

logger = logging.getLogger(__name__)

# Long enough that the server which wrote a save has indexed it (its own background thread
# does, ~15 ms after the append on this machine, slower under load) before the others look:
# at 0.05 s, with 8 servers on one store, a look often came first and embedded and projected
# the save a second time (catch-ups of 10-170 ms on the watcher threads, bench_clients). Short
# enough for a Redis listener on another machine, the only one to index there, to show a save
# well within a second. Reads never wait on it: every read catches up first.
DEBOUNCE_SECONDS = 0.25
# How long stop() waits for a background catch-up under way (one that embeds a pulled log's
# saves can take seconds; past this the owner closes anyway, as before).
STOP_TIMEOUT_SECONDS = 10.0


class LogWatcher:
    """Calls ``catch_up(project)`` once per burst of changes to a project's log."""

    def __init__(self, log: EventStore, catch_up: Callable[[str], Any], debounce: float = DEBOUNCE_SECONDS) -> None:
        self._log = log
        self._catch_up = catch_up
        self._debounce = debounce
        self._timers: dict[str, threading.Timer] = {}
        self._guard = threading.Condition()
        self._running = 0  # catch-ups under way on timer threads
        self._stopped = False
        self._observer: Any = None

    def start(self) -> None:
        """Start receiving the backend's change notices (if it has none, reads still catch up)."""
        try:
            self._observer = self._log.watch(self._changed)
        except Exception as e:  # a backend that cannot listen now: reads still catch up
            logger.warning("change notices unavailable (%s); the index catches up on each read", e)
            self._observer = None

    def _changed(self, project: str) -> None:
        with self._guard:
            if self._stopped or project in self._timers:
                # Stopped, or a catch-up is already due: it will read this change too. Not
                # postponed, so a steady stream of writes elsewhere still reaches the index
                # every debounce.
                return
            timer = threading.Timer(self._debounce, self._run, args=(project,))
            timer.daemon = True
            self._timers[project] = timer
            timer.start()

    def _run(self, project: str) -> None:
        with self._guard:
            self._timers.pop(project, None)
            # A timer already past its wait runs even if cancelled: after stop() it must not
            # touch the index, which its owner is about to close (a catch-up would reopen it
            # on a daemon thread that may still be in SQLite or the model at interpreter exit).
            if self._stopped:
                return
            self._running += 1
        try:
            self._catch_up(project)
        except Exception as e:  # a failed background catch-up is retried by the next read
            logger.warning("background catch-up of %r failed: %s", project, e)
        finally:
            with self._guard:
                self._running -= 1
                self._guard.notify_all()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
        """Stop the observer, cancel pending catch-ups and wait (up to ``timeout``) for one
        under way; False if it was still running then."""
        with self._guard:
            self._stopped = True
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
        with self._guard:
            return self._guard.wait_for(lambda: self._running == 0, timeout)
