"""What every event-log backend shares: validation and event building before anything is
written, the update as one atomic append, and reading events out of ``scan``.

A backend subclasses ``LogBase`` and provides ``_write`` (store encoded events atomically) and
the reading half of ``EventStore`` (``projects``, ``heads``, ``scan_after``...).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .clock import next_stamp, parse_ts
from .errors import InvalidMeta, InvalidProject
from .model import Actor, Event, MemoryForgotten, MemorySaved, compute_memory_id
from .source import Mark
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

if TYPE_CHECKING:
    from .reader import LogLine


class LogBase:
    """Validation, event building and reading shared by the file and the Redis logs."""

    root: Path

    def __init__(self, *, max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES, client: str | None = None) -> None:
        self.max_content_bytes = max_content_bytes
        self.client = client
        self._host = socket.gethostname()

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
        self._write(event.project, [event], True)
        return event.memory_id

    def forget(self, project: str, memory_id: str, not_before_ts: str | None = None) -> None:
        """Append a ``memory.forgotten`` tombstone, timed after ``not_before_ts`` if given."""
        event = self.build_forget(project, memory_id, not_before_ts)
        self._write(event.project, [event], True)

    def replace(self, project: str, old_memory_id: str, new: MemorySaved) -> None:
        """An update: the new save then the forget of the old id, in one atomic append."""
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

    def append(self, project: str, events: Sequence[Event], *, durable: bool = True) -> None:
        """Append events of one project atomically (all or none); ``durable=False`` skips the
        per-append durability step (fsync, replica wait) of a bulk load: call ``sync`` after."""
        project = validate_project(project)
        if any(e.project != project for e in events):
            raise InvalidProject(f"every event appended to {project!r} must belong to it")
        if events:
            self._write(project, events, durable)

    def _write(self, project: str, events: Sequence[Event], durable: bool) -> None:
        """Store events of an already validated project (the events are checked by the caller)."""
        raise NotImplementedError

    def _actor(self) -> Actor:
        return Actor(client=self.client, host=self._host, pid=os.getpid())

    # -- reading -----------------------------------------------------------------------

    def scan_after(self, project: str, mark: Mark) -> Iterator[LogLine]:
        """The entries of a project's log after ``mark``."""
        raise NotImplementedError

    def projects(self) -> list[str]:
        """Projects that have a log, sorted."""
        raise NotImplementedError

    def scan(self, project: str) -> Iterator[LogLine]:
        """Every entry of a project's log, events and problems alike."""
        return self.scan_after(project, Mark())

    def read(self, project: str) -> Iterator[Event]:
        """The good events of a project's log, in log order (bad entries skipped)."""
        return (line.event for line in self.scan(project) if line.event is not None)

    def read_all(self) -> Iterator[Event]:
        """The good events of every project."""
        for project in self.projects():
            yield from self.read(project)

    def problems(self, project: str) -> list[LogLine]:
        """The entries of a project's log that are not events (torn, corrupt, unknown type)."""
        return [line for line in self.scan(project) if line.event is None]

    def close(self) -> None:
        """Release what the log holds open (nothing, unless a backend says otherwise)."""


def _meta_size(meta: object) -> int | None:
    """Bytes of ``meta`` as JSON; None when it is not an object with string keys (refused next)."""
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
        return None
    try:
        return len(orjson.dumps(dict(meta)))
    except orjson.JSONEncodeError as e:  # nested non-string keys, huge ints, surrogates, objects
        raise InvalidMeta(f"meta is not valid JSON: {e}") from e


def is_valid_project(name: str) -> bool:
    """True if ``name`` is a project id exactly as written (a stored name to list)."""
    try:
        return validate_project(name) == name
    except InvalidProject:
        return False
