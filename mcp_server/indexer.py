"""Indexing writes in the background of a long-running server, off the response path.

A write is acknowledged once its event is durably in the log: the log is the truth, and every
read (in this process or any other) catches the index up from the log before answering. What
is left after the append, embedding the new memory and projecting it into SQLite, is work for
one thread per process. Projects written while it is busy are coalesced: one catch-up applies
every event a project's log holds beyond the index, however many writes queued it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

# How long an idle indexer lets a write's reply go first. The reply leaves within ~1-2 ms of the
# append, and needs a core; a catch-up started at once (embedding the memory, ~5-10 ms of one
# core) took it when the machine's other core was busy. Measured on the 2-core machine with
# another job running (bare JSON-RPC client, 80 saves, alternating builds, scratch): save p50
# 6.5 / 5.5 / 6.9 / 6.1 ms starting at once, 3.3 / 4.4 / 3.1 / 3.3 ms after 5 ms.
REPLY_HEADSTART = 0.005


class BackgroundIndexer:
    """One worker thread that calls ``catch_up(project)`` for projects submitted to it."""

    def __init__(self, catch_up: Callable[[str], object], name: str = "mnemolog-indexer",
                 headstart: float = REPLY_HEADSTART) -> None:
        self._catch_up = catch_up
        self._name = name
        self._headstart = headstart
        self._pending: dict[str, None] = {}  # an ordered set: first written, first indexed
        self._wakeup = threading.Condition()
        self._closing = False
        self._busy = False  # a catch-up is running
        self._thread: threading.Thread | None = None

    def submit(self, project: str) -> None:
        """Index ``project``'s log soon; a project already waiting is not queued twice."""
        with self._wakeup:
            if self._closing:  # the log holds the write; the next reader indexes it
                return
            self._pending[project] = None
            self._wakeup.notify_all()
            if self._thread is None:  # started on first use: a server that never writes has none
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or running; False if that took over ``timeout`` s."""
        with self._wakeup:
            return self._wakeup.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self, timeout: float) -> bool:
        """Index what is pending, then stop; False if that took longer than ``timeout`` s.

        Draining rather than abandoning: the queue holds at most one catch-up per project,
        and finishing it leaves the index and the embedding cache ready for the next process.
        A worker that cannot finish in time is left behind (it is a daemon thread): the log
        already holds every acknowledged write, so nothing is lost, only work deferred."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify_all()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        backlog = False  # writes queued while the last catch-up ran: their replies are long gone
        while (project := self._next(backlog)) is not None:
            try:
                self._catch_up(project)
            except Exception:  # never let one failure stop the thread: later writes need it
                logger.warning("background indexing of project %r failed", project, exc_info=True)
            finally:
                with self._wakeup:
                    self._busy = False
                    backlog = bool(self._pending)
                    self._wakeup.notify_all()

    def _next(self, backlog: bool) -> str | None:
        """The next project to index, waiting for one; None once closing and drained. Unless
        it comes from a ``backlog``, it first gives the write's reply its head start
        (``REPLY_HEADSTART``); writes submitted meanwhile join the same catch-up."""
        with self._wakeup:
            while not self._pending and not self._closing:
                self._wakeup.wait()
            if not self._pending:
                return None
            headstart = 0.0 if backlog or self._closing else self._headstart
        if headstart > 0:
            time.sleep(headstart)
        with self._wakeup:
            project = next(iter(self._pending))
            del self._pending[project]
            self._busy = True
            return project
