"""Change notices for the file backend: a watchdog observer on ``logs/``.

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
    """Call ``on_change(project)`` on every change to ``root/logs/<project>.jsonl``; None (and a
    warning) if no watcher can start here."""
    try:
        from watchdog.events import (
            FileCreatedEvent,
            FileDeletedEvent,
            FileModifiedEvent,
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
        # Changes of content or name only. Without a filter inotify also reports every open and
        # close: each server reading a log (every catch-up does) woke every other server's
        # watcher into a catch-up of its own, 2 events a read and 3 an append (measured).
        changes = [FileModifiedEvent, FileCreatedEvent, FileMovedEvent, FileDeletedEvent]
        observer.schedule(Handler(), str(logs), recursive=False, event_filter=changes)
        observer.start()
    except Exception as e:  # inotify limits, unsupported file systems...
        logger.warning("file watcher unavailable (%s); the index catches up on each read", e)
        return None
    return FileWatch(observer)
