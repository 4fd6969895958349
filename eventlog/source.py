"""The event-log protocol: what the projector and the application need from a backend.

Two backends satisfy it: ``EventLog`` (one JSONL file per project under a data root) and
``RedisEventLog`` (one Redis stream per project). The code above ``eventlog`` is written
against ``EventStore`` and never asks which of them it holds. Both write the same event lines
(the codec is shared) and both validate every argument before anything is written.

A reader keeps, per project, a ``Mark``: how far it has read and enough to notice that the log
changed under it. The backend answers three questions in its own terms:

``heads(projects)`` -- is there anything new? A cheap ``Head`` per project whose ``token``
    changes whenever the log changes: a file's identity and size (one ``stat``), or a stream's
    last entry id (every project in one Redis round trip). The reader compares it with the
    token it saw after its last complete read; ``None`` means the project has no log.
``scan(project, mark)`` -- the entries after ``mark``, in log order, each a ``LogLine`` (an
    event or a reported problem) whose ``advance(mark)`` is the mark just past it.
``is_rewritten(project, mark)`` -- is the log still the one whose prefix was read? A file
    must be the same file (device and inode), no shorter, with the same bytes where the last
    read line was; a stream must still hold the last read entry with the same bytes. If not
    (truncation, compaction, a git merge, a stream deleted and imported again), the reader
    starts again from ``Mark()`` -- safe, because applying events is idempotent by event id.

A reader starts from ``Mark(identity=head.identity)`` and keeps the mark its last applied line
gives. Marks are plain values that the reader stores itself (the projector keeps them in its tracking
rows, in the same transaction as the rows they produced). A backend uses the fields it needs
and leaves the others at their defaults.

``watch(on_change)`` starts background notices (a file watcher; a blocking ``XREAD``): an
optimisation only, since every read asks ``heads`` first anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .model import Event, MemoryForgotten, MemorySaved

if TYPE_CHECKING:
    from .reader import LogLine


@dataclass(frozen=True, slots=True)
class Mark:
    """A reader's place in one project's log, in the backend's own terms."""

    offset: int = 0  # what has been read: bytes of a file, entries of a stream
    line_no: int = 1  # number of the next line (entry) to read
    entry_id: str = ""  # stream: id of the last read entry ("" before the first)
    last_start: int = 0  # file: byte offset where the last read line starts
    last_hash: str = ""  # sha256 of the last read line or entry ("" before the first)
    identity: str = ""  # file: "dev:ino" of the file that was read


@dataclass(frozen=True, slots=True)
class Head:
    """A cheap look at the end of one project's log."""

    token: str  # changes whenever the log changes
    identity: str = ""  # which incarnation of the log this is (a file's "dev:ino")
    size: int = 0  # how much there is to read, in the unit of ``Mark.offset``


class Watch(Protocol):
    """A running source of change notices; ``stop`` ends it (idempotent)."""

    def stop(self) -> None:
        """Stop delivering notices and release what the watch holds."""


@runtime_checkable
class EventStore(Protocol):
    """An append-only, per-project event log, shared by many processes (and machines)."""

    root: Path  # this machine's data root: the index, caches and locks live under it
    client: str | None  # the client name recorded in the events this process writes

    # -- writing (every argument validated before anything is written) --------------------

    def build_save(
        self,
        project: str,
        content: str,
        tags: Iterable[str] | None = None,
        importance: int = 5,
        kind: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> MemorySaved:
        """The event a save would append (nothing written)."""

    def build_forget(self, project: str, memory_id: str, not_before_ts: str | None = None) -> MemoryForgotten:
        """The tombstone a forget would append (nothing written)."""

    def save(
        self,
        project: str,
        content: str,
        tags: Iterable[str] | None = None,
        importance: int = 5,
        kind: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> str:
        """Append a save; return the memory id once the backend has acknowledged it."""

    def forget(self, project: str, memory_id: str, not_before_ts: str | None = None) -> None:
        """Append a tombstone."""

    def replace(self, project: str, old_memory_id: str, new: MemorySaved) -> None:
        """Append the new save and the forget of the old id, atomically."""

    def append(self, project: str, events: Sequence[Event], *, durable: bool = True) -> None:
        """Append events of one project atomically; ``durable=False`` for bulk loads, followed
        by one ``sync``."""

    def sync(self, project: str) -> None:
        """Make every append to ``project`` so far durable (after ``durable=False`` appends)."""

    # -- reading -------------------------------------------------------------------------

    def projects(self) -> list[str]:
        """Projects that have a log, sorted."""

    def heads(self, projects: Sequence[str]) -> dict[str, Head | None]:
        """The head of each project's log (``None``: no log), in as few round trips as possible."""

    def scan(self, project: str) -> Iterator[LogLine]:
        """Every entry of a project's log, events and problems alike."""

    def scan_after(self, project: str, mark: Mark) -> Iterator[LogLine]:
        """The entries after ``mark``; each line's ``advance`` gives the mark past it."""

    def is_rewritten(self, project: str, mark: Mark) -> bool:
        """True if the log is no longer the one whose prefix up to ``mark`` was read."""

    def read(self, project: str) -> Iterator[Event]:
        """The good events of a project's log, in log order."""

    def read_all(self) -> Iterator[Event]:
        """The good events of every project."""

    def problems(self, project: str) -> list[LogLine]:
        """The entries of a project's log that are not events."""

    def watch(self, on_change: Callable[[str], None]) -> Watch | None:
        """Call ``on_change(project)`` from a background thread when a log changes; ``None``
        if no notices can be had here (readers then rely on ``heads`` alone)."""

    def describe(self) -> str:
        """Where the log lives, for messages (never a password)."""

    def close(self) -> None:
        """Release connections (the store can still be used: they reopen on demand)."""
