"""Change notices for the file backend: a watchdog observer on ``logs/``, for logs that appear,
are replaced or go away (a git pull, a rewrite, another process's first save to a project).

Appends in place are not reported: their writer indexes them itself (a server in the
background, the command line before it exits). Reporting them woke every other server on the
store at each save, right when the saving server needed a core to answer: the save p50 of 8
servers on one store was ×1.4 that of one server, and ×1.0 without those notices
(BENCHMARKS.md, "Many clients at once").

Only an optimisation for readers: they ask ``heads`` (one ``stat``) before every read anyway,
so if the platform's watcher is unavailable (inotify limits, network file systems) nothing but
latency changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .paths import LOG_SUFFIX, ensure_logs_dir

logger = logging.getLogger(__name__)


class FileWatch:
    """A running watchdog observer; ``stop`` ends it."""

    def __init__(self, observer: Any) -> None:
        self._observer = observer

    def stop(self) -> None:
        """Stop the observer (idempotent)."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None


def project_of(path: str) -> str | None:
    """The project whose log ``path`` is, or None for any other file."""
    name = Path(path).name
    return name[: -len(LOG_SUFFIX)] if name.endswith(LOG_SUFFIX) else None


def watch_logs(root: Path, on_change: Callable[[str], None]) -> FileWatch | None:
    """Call ``on_change(project)`` when ``root/logs/<project>.jsonl`` is created, replaced, renamed
    or deleted (not on appends); None (and a warning) if no watcher can start here."""
    try:
        from watchdog.events import (
            FileCreatedEvent,
            FileDeletedEvent,
            FileMovedEvent,
            FileSystemEventHandler,
        )
        from watchdog.observers import Observer

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                for path in (getattr(event, "src_path", ""), getattr(event, "dest_path", "")):
                    project = project_of(str(path))
                    if project is not None:
                        on_change(project)

        logs = ensure_logs_dir(root)
        observer = Observer()
        observer.daemon = True
        # A log's arrival, swap or removal only. Without a filter inotify also reports every open
        # and close: each server reading a log (every catch-up does) woke every other server's
        # watcher into a catch-up of its own, 2 events a read and 3 an append (measured). git
        # writes a pulled or merged log as a new file (deleted, then created: seen with watchdog).
        changes = [FileCreatedEvent, FileMovedEvent, FileDeletedEvent]
        observer.schedule(Handler(), str(logs), recursive=False, event_filter=changes)
        observer.start()
    except Exception as e:  # inotify limits, unsupported file systems...
        logger.warning("file watcher unavailable (%s); the index catches up on each read", e)
        return None
    return FileWatch(observer)
