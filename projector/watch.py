"""A watchdog observer that catches the index up shortly after a log changes.

Only an optimisation: every read catches up first anyway, so if the platform's watcher is
unavailable (inotify limits, network file systems) correctness does not change."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventlog import EventLog
from eventlog.paths import LOG_SUFFIX, ensure_logs_dir

logger = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.05


class LogWatcher:
    """Calls ``catch_up(project)`` once per burst of changes to ``logs/<project>.jsonl``."""

    def __init__(self, log: EventLog, catch_up: Callable[[str], Any], debounce: float = DEBOUNCE_SECONDS) -> None:
        self._log = log
        self._catch_up = catch_up
        self._debounce = debounce
        self._timers: dict[str, threading.Timer] = {}
        self._guard = threading.Lock()
        self._observer: Any = None

    def start(self) -> None:
        """Start watching; on failure log a warning and rely on catch-up at read time."""
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer

            watcher = self

            class Handler(FileSystemEventHandler):  # type: ignore[misc]
                def on_any_event(self, event: Any) -> None:
                    for path in (getattr(event, "src_path", ""), getattr(event, "dest_path", "")):
                        watcher._changed(str(path))

            logs = ensure_logs_dir(self._log.root)
            self._observer = Observer()
            self._observer.daemon = True
            self._observer.schedule(Handler(), str(logs), recursive=False)
            self._observer.start()
        except Exception as e:  # inotify limits, unsupported file systems...
            logger.warning("file watcher unavailable (%s); the index catches up on each read", e)
            self._observer = None

    def _changed(self, path: str) -> None:
        name = Path(path).name
        if not name.endswith(LOG_SUFFIX):
            return
        project = name[: -len(LOG_SUFFIX)]
        with self._guard:
            timer = self._timers.pop(project, None)
            if timer is not None:
                timer.cancel()
            timer = threading.Timer(self._debounce, self._run, args=(project,))
            timer.daemon = True
            self._timers[project] = timer
            timer.start()

    def _run(self, project: str) -> None:
        with self._guard:
            self._timers.pop(project, None)
        try:
            self._catch_up(project)
        except Exception as e:  # a failed background catch-up is retried by the next read
            logger.warning("background catch-up of %r failed: %s", project, e)

    def stop(self) -> None:
        """Stop the observer and any pending catch-up."""
        with self._guard:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None
