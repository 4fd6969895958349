"""``EventLog``: the library API over a store's per-project logs."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from . import paths
from .clock import next_stamp, parse_ts
from .codec import encode_event
from .errors import InvalidMeta, InvalidProject
from .lock import DEFAULT_LOCK_TIMEOUT
from .model import Actor, Event, MemoryForgotten, MemorySaved, compute_memory_id
from .reader import LogLine, scan
from .validate import (
    DEFAULT_MAX_CONTENT_BYTES,
    validate_content,
    validate_importance,
    validate_kind,
    validate_memory_id,
    validate_meta,
    validate_project,
    validate_tags,
)
from .writer import Durability, append_lines


class EventLog:
    """Append-only per-project logs under ``root/logs``; safe for many processes at once."""

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
        durability: Durability | str = Durability.ALWAYS,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        client: str | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else paths.default_root()
        self.max_content_bytes = max_content_bytes
        self.durability = Durability(durability)
        self.lock_timeout = lock_timeout
        self.client = client
        self._host = socket.gethostname()
        self._dirs_ready = False  # logs/, locks/ and .gitattributes made by this instance
        self._paths: dict[str, tuple[Path, Path]] = {}  # project -> (log, lock)

    # -- writing -----------------------------------------------------------------------

    def save(
        self,
        project: str,
        content: str,
        tags: Iterable[str] | None = None,
        importance: int = 5,
        kind: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> str:
        """Append a ``memory.saved`` event and return the memory id (same content, same id)."""
        event = self.build_save(project, content, tags, importance, kind, meta)
        self._write(event.project, [event])
        return event.memory_id

    def forget(self, project: str, memory_id: str, not_before_ts: str | None = None) -> None:
        """Append a ``memory.forgotten`` tombstone, timed after ``not_before_ts`` if given."""
        event = self.build_forget(project, memory_id, not_before_ts)
        self._write(event.project, [event])

    def replace(self, project: str, old_memory_id: str, new: MemorySaved) -> None:
        """An update: the new save then the forget of the old id, in one write."""
        events: list[Event] = [new]
        if validate_memory_id(old_memory_id) != new.memory_id:
            events.append(self.build_forget(project, old_memory_id, new.ts))
        self.append(project, events)

    def build_save(
        self,
        project: str,
        content: str,
        tags: Iterable[str] | None = None,
        importance: int = 5,
        kind: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> MemorySaved:
        """Validate every argument and return the event a save would append (nothing written)."""
        project = validate_project(project)
        content = validate_content(content, self.max_content_bytes)
        clean_meta = validate_meta(meta, _meta_size(meta))
        event_id, ts = next_stamp()
        return MemorySaved(
            event_id=event_id,
            ts=ts,
            project=project,
            memory_id=compute_memory_id(project, content),
            content=content,
            tags=validate_tags(tags),
            importance=validate_importance(importance),
            kind=validate_kind(kind),
            meta=clean_meta,
            actor=self._actor(),
        )

    def build_forget(self, project: str, memory_id: str, not_before_ts: str | None = None) -> MemoryForgotten:
        """Validate and return the tombstone a forget would append (nothing written)."""
        project, memory_id = validate_project(project), validate_memory_id(memory_id)
        not_before = parse_ts(not_before_ts) + 1 if not_before_ts else 0
        event_id, ts = next_stamp(not_before)
        return MemoryForgotten(event_id, ts, project, memory_id, self._actor())

    def append(self, project: str, events: Sequence[Event]) -> None:
        """Append events of one project in one locked ``write()`` (fsync'd unless ``never``)."""
        project = validate_project(project)
        if any(e.project != project for e in events):
            raise InvalidProject(f"every event appended to {project!r} must belong to it")
        if events:
            self._write(project, events)

    def _write(self, project: str, events: Sequence[Event]) -> None:
        """Append events of an already validated project (the events are checked by the caller)."""
        data = b"".join(encode_event(e) for e in events)
        if project not in self._paths:
            self._paths[project] = (paths.log_path(self.root, project), paths.lock_path(self.root, project))
        log, lock = self._paths[project]
        if not self._dirs_ready:
            paths.ensure_logs_dir(self.root)
            self._dirs_ready = True
        try:
            append_lines(log, lock, data, self.durability, self.lock_timeout)
        except FileNotFoundError:
            # The directories went away under a long-running process (checked only once, to
            # keep stat calls off every save). Nothing was written: make them again, retry.
            paths.ensure_logs_dir(self.root)
            append_lines(log, lock, data, self.durability, self.lock_timeout)

    def _actor(self) -> Actor:
        return Actor(client=self.client, host=self._host, pid=os.getpid())

    # -- reading -----------------------------------------------------------------------

    def projects(self) -> list[str]:
        """Projects that have a log, sorted."""
        logs = paths.logs_dir(self.root)
        if not logs.is_dir():
            return []
        names = (p.name[: -len(paths.LOG_SUFFIX)] for p in logs.glob(f"*{paths.LOG_SUFFIX}"))
        return sorted(n for n in names if _is_valid_project(n))

    def log_path(self, project: str) -> Path:
        """The log file of ``project`` (which may not exist yet)."""
        return paths.log_path(self.root, validate_project(project))

    def scan(self, project: str, offset: int = 0, line_no: int = 1) -> Iterator[LogLine]:
        """Every complete line of a project's log from ``offset``, events and problems alike."""
        project = validate_project(project)
        return scan(paths.log_path(self.root, project), offset, line_no, project)

    def read(self, project: str, offset: int = 0) -> Iterator[Event]:
        """The good events of a project's log, in file order (bad lines skipped)."""
        return (line.event for line in self.scan(project, offset) if line.event is not None)

    def read_all(self) -> Iterator[Event]:
        """The good events of every project."""
        for project in self.projects():
            yield from self.read(project)

    def problems(self, project: str) -> list[LogLine]:
        """The lines of a project's log that are not events (torn, corrupt, unknown type)."""
        return [line for line in self.scan(project) if line.event is None]


def _meta_size(meta: object) -> int | None:
    """Bytes of ``meta`` as JSON; None when it is not an object with string keys (refused next)."""
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
        return None
    try:
        return len(orjson.dumps(dict(meta)))
    except orjson.JSONEncodeError as e:  # nested non-string keys, huge ints, surrogates, objects
        raise InvalidMeta(f"meta is not valid JSON: {e}") from e


def _is_valid_project(name: str) -> bool:
    try:
        return validate_project(name) == name
    except InvalidProject:
        return False
